package dnsfail

import (
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/geobooth/geobooth/kit/testenv"
)

// bus delivers the members' serf events to each other, as serf would.
type bus struct {
	mu      sync.Mutex
	servers map[string]*Server
}

func (b *bus) broadcast(from string) func(string, []byte) error {
	return func(event string, payload []byte) error {
		b.mu.Lock()
		var to []*Server
		for name, s := range b.servers {
			if name != from {
				to = append(to, s)
			}
		}
		b.mu.Unlock()
		for _, s := range to {
			switch event {
			case SerialEvent:
				s.ReceiveSerials(from, payload)
			case HealthEvent:
				s.Receive(from, payload)
			}
		}
		return nil
	}
}

// Issue 20: serials differed between members for the same content (east
// and the arbitrator 1796195907, west 1796195910 after restarts). After a
// grant, a move seen by the members one after the other, and a restart of
// one member, every member serves the same serial; no member's serial
// goes back, and two members never give one serial to two contents.
func TestOneSerialOnEveryMember(t *testing.T) {
	cfg := testConfig(t, testZone, nil, nil)
	dir := t.TempDir()
	b := &bus{servers: map[string]*Server{}}
	views := map[string]*owners{}
	stops := map[string]func(){}
	start := func(name string) {
		c := cfg
		c.Listen = fmt.Sprintf("127.0.0.1:%d", freePort(t))
		if views[name] == nil {
			views[name] = &owners{}
		}
		s, stop := runServer(t, Options{Config: c, Self: name, StateDir: filepath.Join(dir, name), Owners: views[name].get,
			Broadcast: b.broadcast(name)})
		b.mu.Lock()
		b.servers[name] = s
		b.mu.Unlock()
		stops[name] = stop
	}
	names := []string{"east", "west", "arbitrator"}
	for _, n := range names {
		start(n)
	}
	type state struct {
		serial uint32
		digest string
	}
	snapshot := func() map[string]state {
		b.mu.Lock()
		defer b.mu.Unlock()
		out := map[string]state{}
		for n, s := range b.servers {
			z := s.set.Load().zones[0]
			s.mu.Lock()
			out[n] = state{s.serials[z.origin], s.digests[z.origin]}
			s.mu.Unlock()
		}
		return out
	}
	// Watch: per member the serial only rises; one serial, one content.
	var (
		wmu       sync.Mutex
		violation string
		last      = map[string]uint32{}
	)
	watching := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for {
			select {
			case <-watching:
				return
			case <-time.After(2 * time.Millisecond):
			}
			snap := snapshot()
			bySerial := map[uint32]string{}
			wmu.Lock()
			for n, st := range snap {
				if prev, ok := last[n]; ok && newer(prev, st.serial) && violation == "" {
					violation = fmt.Sprintf("%s's serial went back from %d to %d", n, prev, st.serial)
				}
				last[n] = st.serial
				if d, ok := bySerial[st.serial]; ok && d != st.digest && violation == "" {
					violation = fmt.Sprintf("serial %d names two contents: %v", st.serial, snap)
				}
				bySerial[st.serial] = st.digest
			}
			wmu.Unlock()
		}
	}()
	agreed := func(what string) uint32 {
		t.Helper()
		var serial uint32
		testenv.Eventually(t, 10*time.Second, func() error {
			snap := snapshot()
			serial = snap["east"].serial
			for n, st := range snap {
				if st != snap["east"] {
					return fmt.Errorf("%s: members differ: %s %+v, east %+v", what, n, st, snap["east"])
				}
			}
			return nil
		})
		return serial
	}
	set := func(name, owner string) {
		views[name].set(owner, time.Time{})
		b.mu.Lock()
		s := b.servers[name]
		b.mu.Unlock()
		s.Changed()
	}

	unowned := agreed("at start")
	for _, n := range names {
		set(n, "east")
		time.Sleep(20 * time.Millisecond) // the members learn of the grant one after the other
	}
	granted := agreed("after the grant")
	for _, n := range []string{"west", "arbitrator", "east"} {
		set(n, "west")
		time.Sleep(20 * time.Millisecond)
	}
	moved := agreed("after the move")
	stops["arbitrator"]()
	b.mu.Lock()
	delete(b.servers, "arbitrator")
	b.mu.Unlock()
	start("arbitrator")
	restarted := agreed("after a restart of the arbitrator")
	close(watching)
	<-watched
	if violation != "" {
		t.Fatal(violation)
	}
	if !newer(granted, unowned) || !newer(moved, granted) || newer(moved, restarted) {
		t.Fatalf("serials: no owner %d, granted %d, moved %d, after the restart %d", unowned, granted, moved, restarted)
	}
	t.Logf("serials: no owner %d, granted %d, moved %d, after the restart %d", unowned, granted, moved, restarted)
}
