package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/geobooth/geobooth/kit/sdnotify"
)

// readier is a service that says when it serves (its listeners bound).
type readier interface {
	Ready() <-chan struct{}
}

// alive reports whether the ticket loop runs (node.Node.Alive).
type alive func(ctx context.Context) error

// notifyReady tells systemd READY=1 once every service that can say so
// is ready and the ticket loop has booted (its stored state read), then
// feeds the watchdog, when one is set, from the ticket loop itself: a
// WATCHDOG=1 is sent only when the loop ran a no-op of its own within
// half the interval, so a hung loop gets the member restarted.
func notifyReady(ctx context.Context, sd *sdnotify.Notifier, log *slog.Logger, services []Service, loop alive, status string, watchdog time.Duration, onReady func()) {
	for _, s := range services {
		if r, ok := s.(readier); ok {
			select {
			case <-r.Ready():
			case <-ctx.Done():
				return
			}
		}
	}
	if err := loop(ctx); err != nil {
		return
	}
	onReady()
	if err := sd.Send("READY=1", "STATUS="+status); err != nil {
		log.Warn("cannot tell systemd the daemon is ready", "err", err)
	}
	if watchdog <= 0 {
		return
	}
	tick := time.NewTicker(watchdog / 2)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		pctx, cancel := context.WithTimeout(ctx, watchdog/2)
		err := loop(pctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			log.Error("the ticket loop did not answer: the systemd watchdog is not fed", "within", watchdog/2, "err", err)
			continue
		}
		if err := sd.Send("WATCHDOG=1"); err != nil {
			log.Warn("cannot feed the systemd watchdog", "err", err)
		}
	}
}

// statusLine is systemd's STATUS= for a running member.
func statusLine(member, role string) string {
	return fmt.Sprintf("member %s (%s) serving", member, role)
}
