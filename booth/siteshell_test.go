package booth

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/geobooth/geobooth/booth/handover"
	"github.com/geobooth/geobooth/kit/testenv"
)

// fakeCIB records a site's CIB writes.
type fakeCIB struct {
	mu     sync.Mutex
	writes []CIBWrite
}

func (f *fakeCIB) Load(context.Context, string) (CIBTicket, error) { return CIBTicket{}, nil }

func (f *fakeCIB) SetAttr(context.Context, string, string, string) error { return nil }

func (f *fakeCIB) DeleteAttr(context.Context, string, string) error { return nil }

func (f *fakeCIB) Write(_ context.Context, w CIBWrite, _ time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.writes = append(f.writes, w)
	return nil
}

func (f *fakeCIB) granted() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.writes) > 0 && f.writes[len(f.writes)-1].Granted
}

// Two sites and an arbitrator on loopback addresses: booth grant at east
// over TCP answers More, then success on the same connection once east
// leads, and east's CIB is granted; a revoke at west is redirected; when
// east stops, west takes the ticket after the lease (its timer follows
// the renewals it hears: the shell used to sleep through them).
func TestASiteServerAnswersAGrantWhenItIsDone(t *testing.T) {
	cibs := []*fakeCIB{{}, {}}
	var stopEast context.CancelFunc
	eastDir := t.TempDir()
	l := newLoopback(t, "port = %d\nsite = %s\nsite = %s\narbitrator = %s\nticket = web\n expire = 10\n timeout = 1\n retries = 3\n renewal-freq = 5\n",
		func(i int, s *Server, ctx context.Context) context.Context {
			if i < 2 {
				s.UseCIB(cibs[i])
			}
			if i == 0 {
				s.LeaveHandover(eastDir)
				ctx, stopEast = context.WithCancel(ctx)
			}
			return ctx
		})
	servers, addrs := l.servers, l.addrs
	// A Booth run under way says so before it sends anything.
	if f, err := handover.Read(eastDir); err != nil || f == nil || f.Complete || len(f.Tickets) != 1 || f.Tickets[0].Acked.IsValid() {
		t.Fatalf("east's handover while it runs: %+v, %v; want an incomplete one naming web only", f, err)
	}
	// West has nothing to do for an hour: the ticket is free.
	testenv.Eventually(t, 10*time.Second, func() error {
		s := servers[1]
		s.mu.Lock()
		defer s.mu.Unlock()
		if left := s.arb.tickets[0].nextCron - s.now(); left < 30*time.Minute {
			return fmt.Errorf("west looks again at web in %v", left)
		}
		return nil
	})
	// The outcome is success, or, when a site's vote came too late for
	// the election (a loaded machine), the commit pending for a lease.
	replies := l.ask(0, CmdGrant)
	if len(replies) == 0 || (replies[len(replies)-1].Result != 0 && replies[len(replies)-1].Result != ResultPending) {
		t.Fatalf("grant at east: %+v", replies)
	}
	if replies[0].Result != ResultMore {
		t.Fatalf("the first answer is %v, want More", replies[0].Result)
	}
	testenv.Eventually(t, 15*time.Second, func() error {
		if !cibs[0].granted() || cibs[1].granted() {
			return fmt.Errorf("east's CIB granted %v, west's %v", cibs[0].granted(), cibs[1].granted())
		}
		return nil
	})
	// West learns of east's lease from its heartbeat, which may come
	// after east's client was answered.
	testenv.Eventually(t, 5*time.Second, func() error {
		if v := servers[1].Tickets(time.Now())[0]; v.Owner != addrs[0] {
			return fmt.Errorf("west sees %q as the owner", v.Owner)
		}
		return nil
	})
	if r := l.ask(1, CmdClientRevoke); len(r) != 1 || r[0].Result != ResultRedirect {
		t.Fatalf("revoke at west: %+v, want a redirect", r)
	}
	stopEast()
	// East leaves its last word: it held web, and promised itself.
	testenv.Eventually(t, 5*time.Second, func() error {
		f, err := handover.Read(eastDir)
		if err != nil || f == nil || !f.Complete {
			return fmt.Errorf("east's handover after it stopped: %+v, %v", f, err)
		}
		if h := f.Tickets[0]; f.Self.String() != addrs[0] || h.Acked.String() != addrs[0] || h.Owner.String() != addrs[0] || !h.Granted || h.Binding != 10*time.Second {
			t.Fatalf("east's handover: %+v", f)
		}
		return nil
	})
	testenv.Eventually(t, 25*time.Second, func() error {
		if v := servers[2].Tickets(time.Now())[0]; v.Owner != addrs[1] || !cibs[1].granted() {
			return fmt.Errorf("after east stopped: the arbitrator sees %q as the owner, west's CIB granted %v", v.Owner, cibs[1].granted())
		}
		return nil
	})
}
