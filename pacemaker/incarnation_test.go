package pacemaker

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// Issue 19: the site daemon's incarnation lives in the CIB as a cluster
// property, written and read with the real crm_attribute.
func TestIncarnationIsACIBProperty(t *testing.T) {
	s := newSite(t, "stop.xml")
	d, _ := newDriver(t, s, Default(), nil)
	ctx := context.Background()
	const name = "geobooth-incarnation-test-east"
	if n, ok, err := d.Incarnation(ctx, name); err != nil || !ok || n != 0 {
		t.Fatalf("before any write: %d %v %v, want 0 true nil", n, ok, err)
	}
	for _, want := range []uint64{1, 2, 18446744073709551615} {
		if err := d.SetIncarnation(ctx, name, want); err != nil {
			t.Fatal(err)
		}
		if n, ok, err := d.Incarnation(ctx, name); err != nil || !ok || n != want {
			t.Fatalf("after writing %d: %d %v %v", want, n, ok, err)
		}
	}
	if out, code := s.tool("crm_attribute", "--type", "crm_config", "--name", name, "--query", "--quiet"); code != 0 || out != "18446744073709551615\n" {
		t.Fatalf("crm_attribute reads %q (exit %d)", out, code)
	}
	// Something else in the property is an error, not a zero.
	if out, code := s.tool("crm_attribute", "--type", "crm_config", "--name", name, "--update", "garbage"); code != 0 {
		t.Fatalf("crm_attribute: %s", out)
	}
	if _, _, err := d.Incarnation(ctx, name); err == nil {
		t.Fatal("a property that is not a number was read without an error")
	}
	// A site without Pacemaker keeps none.
	nd := NewDriver(Noop{}, Default(), "east", "x", slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry(), nil)
	if _, ok, err := nd.Incarnation(ctx, name); ok || err != nil {
		t.Fatalf("the no-op driver: ok %v err %v", ok, err)
	}
	if err := nd.SetIncarnation(ctx, name, 1); !errors.Is(err, ErrNoPacemaker) {
		t.Fatalf("the no-op driver wrote an incarnation: %v", err)
	}
}
