package dnsfail

import (
	"context"
	"net"
	"testing"
	"time"
)

// TestStopRightAfterStartFreesThePort: a server stopped the moment it
// is ready releases its TCP port, so a restart on the same address binds.
// The TCP server used to be shut down before it had started, which left
// its listener open ("address already in use" on the restart, seen in CI).
func TestStopRightAfterStartFreesThePort(t *testing.T) {
	cfg := testConfig(t, testZone, nil, nil)
	o := &owners{}
	o.set("east", time.Time{})
	for i := 0; i < 20; i++ {
		s, err := New(Options{Config: cfg, Self: "east", StateDir: t.TempDir(), Owners: o.get, Members: []string{"east", "west", "arbitrator"}})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		<-s.ready
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("round %d: %v", i, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: Run did not return", i)
		}
		ln, err := net.Listen("tcp", cfg.Listen)
		if err != nil {
			t.Fatalf("round %d: the stopped server still holds its port: %v", i, err)
		}
		ln.Close()
	}
}
