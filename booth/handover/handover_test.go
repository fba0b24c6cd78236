package handover

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestWriteReadAndMarkImported(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	if f, err := Read(dir); f != nil || err != nil {
		t.Fatalf("Read of nothing = %+v, %v", f, err)
	}
	east := netip.MustParseAddr("192.0.2.1")
	in := File{Self: east, Written: time.Unix(1700000000, 0).UTC(), Complete: true,
		Tickets: []Ticket{{Name: "web", Term: 4, Acked: east, Owner: east, Granted: true, Binding: 12 * time.Second}}}
	if err := Write(dir, in); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(Path(dir)); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("the file: %v, %v", st, err)
	}
	out, err := Read(dir)
	if err != nil || out == nil || out.Self != east || !out.Complete || len(out.Tickets) != 1 || out.Tickets[0] != in.Tickets[0] {
		t.Fatalf("Read = %+v, %v", out, err)
	}
	if err := MarkImported(dir); err != nil {
		t.Fatal(err)
	}
	if f, err := Read(dir); f != nil || err != nil {
		t.Fatalf("Read after MarkImported = %+v, %v", f, err)
	}
}

func TestABadFileIsRefusedClearly(t *testing.T) {
	for _, c := range []struct{ text, want string }{
		{"{not json", "is corrupt"},
		{`{"version": 9}`, "unknown version 9"},
	} {
		dir := t.TempDir()
		if err := os.WriteFile(Path(dir), []byte(c.text), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Read(dir); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Read(%q) = %v, want %q", c.text, err, c.want)
		}
	}
}

func FuzzRead(f *testing.F) {
	f.Add([]byte(`{"version":1,"self":"192.0.2.1","complete":true,"tickets":[{"name":"web","acked":"192.0.2.1"}]}`))
	f.Add([]byte(`{"version":1,"tickets":[{"acked":"::ffff:1.2.3.4","binding_ns":-1}]}`))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		if err := os.WriteFile(Path(dir), b, 0o600); err != nil {
			t.Fatal(err)
		}
		h, err := Read(dir)
		if err == nil && (h == nil || h.Version != version) {
			t.Fatalf("Read accepted %q as %+v", b, h)
		}
	})
}
