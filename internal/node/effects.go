package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/geobooth/geobooth/ticket"
	"github.com/geobooth/geobooth/ticket/engine"
)

// carry carries out what the engine returned, in its order, without
// blocking: the write goes to the store's goroutine, stops to the front of
// their tickets' workers, escalations and effects next, messages last.
func (n *Node) carry(rd engine.Ready) {
	if rd.Save != nil {
		// The engine has at most one write under way: the channel has
		// room for it.
		n.saves <- rd.Save
	}
	for _, s := range rd.Stops {
		if n.opt.Resources == nil {
			// Nothing runs here: stopped at once, without waking a
			// worker (thousands of tickets renew on an arbitrator).
			n.stopped = append(n.stopped, s)
			continue
		}
		n.rts[s.Ticket].worker.stop(s, n.leaseWall(s.Deadline))
	}
	for _, e := range rd.Escalations {
		n.escalate(e)
	}
	for _, e := range rd.Effects {
		n.effect(e.Ticket, n.rts[e.Ticket], e.Effect)
	}
	if len(rd.Send) > 0 {
		// The batch's messages leave together: one sendmmsg per 64.
		n.tr.Send(rd.Send)
	}
	now := n.clock.Mono()
	for _, name := range rd.Changed {
		n.publish(name, n.rts[name], now)
	}
	st := n.eng.Stats()
	n.met.electionsQueued.Set(float64(st.Queued))
	n.met.electionWindow.Set(float64(st.Window))
	n.met.unsaved.Set(float64(st.Unsaved))
	if d := st.Deferred; d > n.met.deferredSeen {
		n.met.electionsDeferred.Add(float64(d - n.met.deferredSeen))
		n.met.deferredSeen = d
	}
}

// effect carries out one effect other than a stop or a write.
func (n *Node) effect(name string, r *rt, e ticket.Effect) {
	switch e := e.(type) {
	case ticket.StartResources:
		n.met.acquisitions.WithLabelValues(name).Inc()
		if n.opt.Resources != nil {
			r.worker.grant(Grant{Term: e.Term, Expires: n.leaseWall(e.LeaseEnd), Forced: e.Forced})
		}
	case ticket.LeaseRenewed:
		n.met.renewals.WithLabelValues(name).Inc()
		if n.opt.Resources != nil {
			r.worker.renew(e.Term, n.leaseWall(e.LeaseEnd))
		}
	case ticket.RunHandler:
		go n.runHandler(name, r, e)
	case ticket.PrepareHandover:
		go n.prepareHandover(name, r.cl.Name(e.To), e.Token)
	case ticket.Reply:
		n.reply(e)
	case ticket.Event:
		n.onEvent(name, r, e)
	}
}

func (n *Node) reply(e ticket.Reply) {
	n.mu.Lock()
	ch := n.pending[e.ID]
	delete(n.pending, e.ID)
	n.mu.Unlock()
	if ch != nil {
		ch <- e
	}
}

// escalate applies on_revoke_failure to a stop that missed its deadline.
func (n *Node) escalate(e engine.Escalation) {
	n.met.escalations.WithLabelValues(e.Ticket).Inc()
	n.log.Error("the ticket's resources were not stopped in time: escalating", "ticket", e.Ticket, "reason", e.Reason)
	n.Note(e.Ticket, "escalated", e.Reason)
	if n.opt.Resources != nil {
		go n.opt.Resources.Escalate(e.Ticket, e.Reason)
	}
}

func (n *Node) prepareHandover(name, to string, tok uint64) {
	ok := true
	if n.opt.Handover != nil {
		ctx, cancel := context.WithTimeout(context.Background(), n.opt.HandoverTimeout)
		err := n.opt.Handover.PrepareHandover(ctx, name, to)
		cancel()
		if err != nil {
			n.log.Warn("handover not ready: the move is aborted and this site keeps the ticket", "ticket", name, "to", to, "err", err)
			ok = false
		}
	}
	n.doneWith(name, ticket.HandoverDone{Token: tok, OK: ok})
}

// leaseWall converts a lease end (monotonic) to wall time; zero for none.
func (n *Node) leaseWall(end time.Duration) time.Time {
	if end <= 0 || end == time.Duration(1<<63-1) {
		return time.Time{}
	}
	return n.wallOf(end)
}

func (n *Node) wallOf(mono time.Duration) time.Time { return wallOf(n.clock, mono) }

// runStore writes what the engine asks, one group commit at a time, and
// reports each back to the loop.
func (n *Node) runStore(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case sv := <-n.saves:
			start := time.Now()
			failed := n.store.saveAll(sv.Records)
			n.met.persistSeconds.Observe(time.Since(start).Seconds())
			for name, err := range failed {
				n.met.persistFailures.Inc()
				n.log.Error("cannot write the ticket's state: it sends nothing and starts nothing until a write succeeds", "ticket", name, "err", err)
			}
			n.input(func(now time.Duration) { n.eng.Saved(now, sv.ID, failed) })
		}
	}
}

// runHandler runs the before-acquire handler with Booth's environment and
// GEOBOOTH_* twins, killed (with its process group) at the timeout.
func (n *Node) runHandler(name string, r *rt, e ticket.RunHandler) {
	argv := r.cfg.BeforeAcquireHandler
	timeout := n.cfg.HandlerTimeouts[name]
	if n.opt.Check != nil && r.cfg.LocalChecks {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		err := n.opt.Check(ctx, name, e.Kind, e.Force)
		cancel()
		if err != nil {
			n.met.handlerRuns.WithLabelValues(name, "check_failed").Inc()
			n.log.Warn("local check refuses the ticket", "ticket", name, "err", err)
			n.doneWith(name, ticket.HandlerDone{Token: e.Token, OK: false, Detail: err.Error()})
			return
		}
	}
	if len(argv) == 0 {
		n.doneWith(name, ticket.HandlerDone{Token: e.Token, OK: true})
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	expires := "0"
	if v := n.View(name); v.Expires != nil {
		expires = strconv.FormatInt(v.Expires.Unix(), 10)
	}
	kind := "acquire"
	if e.Kind == ticket.HandlerRenew {
		kind = "renew"
	}
	env := map[string]string{"TICKET": name, "LOCAL": n.cfg.local(), "CONF_PATH": n.cfg.ConfigPath,
		"CONF_NAME": n.cfg.ClusterName, "TICKET_EXPIRES": expires}
	cmd.Env = os.Environ()
	for k, v := range env {
		cmd.Env = append(cmd.Env, "BOOTH_"+k+"="+v, "GEOBOOTH_"+k+"="+v)
	}
	cmd.Env = append(cmd.Env, "GEOBOOTH_HANDLER_KIND="+kind)
	cmd.Env = append(cmd.Env, n.opt.HandlerEnv...)
	out, err := cmd.CombinedOutput()
	result := "ok"
	switch {
	case ctx.Err() != nil:
		result = "timeout"
		err = fmt.Errorf("killed after %v", timeout)
	case err != nil:
		result = "failed"
	}
	n.met.handlerRuns.WithLabelValues(name, result).Inc()
	if err != nil {
		var ee *exec.ExitError
		code := -1
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		}
		n.log.Warn("before_acquire_handler failed", "ticket", name, "kind", kind, "handler", argv[0], "exit", code, "err", err, "output", trimOutput(out))
	}
	done := ticket.HandlerDone{Token: e.Token, OK: err == nil}
	if err != nil {
		done.Detail = fmt.Sprintf("%s: %v", filepath.Base(argv[0]), err)
	}
	n.doneWith(name, done)
}

func trimOutput(b []byte) string {
	const max = 512
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return string(b)
}
