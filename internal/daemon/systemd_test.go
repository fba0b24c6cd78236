package daemon

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/geobooth/geobooth/kit/sdnotify"
)

type readyService struct{ ready chan struct{} }

func (s readyService) Run(ctx context.Context) error { <-ctx.Done(); return nil }
func (s readyService) Ready() <-chan struct{}        { return s.ready }

// notifySocket listens where NOTIFY_SOCKET points and returns what
// arrives, one datagram per receive.
func notifySocket(t *testing.T) (*sdnotify.Notifier, func(time.Duration) (string, error)) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: p, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	t.Setenv("NOTIFY_SOCKET", p)
	return sdnotify.FromEnv(), func(d time.Duration) (string, error) {
		c.SetReadDeadline(time.Now().Add(d))
		b := make([]byte, 4096)
		n, err := c.Read(b)
		return string(b[:n]), err
	}
}

// READY=1 waits for every service that says when it serves and for the
// ticket loop; WATCHDOG=1 comes only while the loop answers.
func TestNotifyReadyAndWatchdogFollowServicesAndLoop(t *testing.T) {
	sd, recv := notifySocket(t)
	svc := readyService{ready: make(chan struct{})}
	var stuck atomic.Bool
	loop := func(ctx context.Context) error {
		if stuck.Load() {
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		notifyReady(ctx, sd, slog.New(slog.DiscardHandler), []Service{svc}, loop, "serving", 100*time.Millisecond, func() {})
	}()
	if got, err := recv(300 * time.Millisecond); err == nil {
		t.Fatalf("%q before the service was ready", got)
	}
	close(svc.ready)
	got, err := recv(5 * time.Second)
	if err != nil || !strings.HasPrefix(got, "READY=1\nSTATUS=serving\n") {
		t.Fatalf("got %q, %v; want READY=1 and the status", got, err)
	}
	for i := 0; i < 3; i++ {
		if got, err := recv(5 * time.Second); err != nil || got != "WATCHDOG=1\n" {
			t.Fatalf("got %q, %v; want WATCHDOG=1", got, err)
		}
	}
	stuck.Store(true)
	// At most one keep-alive already on its way; then none.
	recv(200 * time.Millisecond)
	if got, err := recv(400 * time.Millisecond); err == nil {
		t.Fatalf("%q while the loop is stuck", got)
	}
	stuck.Store(false)
	if got, err := recv(5 * time.Second); err != nil || got != "WATCHDOG=1\n" {
		t.Fatalf("got %q, %v once the loop answers again", got, err)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("notifyReady did not end with its context")
	}
}

func TestNotifyReadyNeedsTheLoop(t *testing.T) {
	sd, recv := notifySocket(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go notifyReady(ctx, sd, slog.New(slog.DiscardHandler), nil, func(ctx context.Context) error {
		<-ctx.Done()
		return errors.New("never booted")
	}, "serving", 0, func() {})
	if got, err := recv(300 * time.Millisecond); err == nil {
		t.Fatalf("%q before the ticket loop ran", got)
	}
}
