package membership

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestRestartIntoBusyPoolIsRaceFree restarts a member again and again on
// its old address while the others gossip events to it. Serf starts its
// gossip before it finishes building itself, so an event that arrives in
// that gap was a data race inside serf (seen under -race in test/cluster);
// New holds incoming traffic back until serf is complete.
func TestRestartIntoBusyPoolIsRaceFree(t *testing.T) {
	ring := keyring(t, key1)
	a, b := freeAddr(t), freeAddr(t)
	east := start(t, "east", a, []string{a, b}, ring)
	west := start(t, "west", b, []string{a, b}, ring)
	eventually(t, 10*time.Second, func() error {
		if s := statusOf(east.m, "west"); s != "alive" {
			return fmt.Errorf("east sees west %s", s)
		}
		return nil
	})
	west.m.serf.Shutdown()

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ctx.Err() == nil && i < 100000; i++ {
			_ = east.m.Broadcast("noise", []byte(fmt.Sprint(i)))
			time.Sleep(time.Millisecond)
		}
	}()
	defer func() { cancel(); wg.Wait() }()

	cfg := Default()
	cfg.Profile, cfg.KeyringFile = "local", ring
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for i := 0; i < 20; i++ {
		m, err := New(cfg, "west", b, []string{a}, map[string]string{"role": "site"}, log, prometheus.NewRegistry())
		if err != nil {
			t.Fatalf("restart %d: %v", i, err)
		}
		// Let east's gossip reach the new west, then stop it again.
		time.Sleep(100 * time.Millisecond)
		if err := m.serf.Shutdown(); err != nil {
			t.Fatal(err)
		}
	}
}
