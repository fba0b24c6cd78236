package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"github.com/geobooth/geobooth/ticket"
)

// effect carries out one effect of a step. Slow work goes to the ticket's
// worker or its own goroutine and reports back through n.send.
func (n *Node) effect(name string, r *rt, e ticket.Effect) {
	switch e := e.(type) {
	case ticket.Persist:
		// Done before the other effects (step).
	case ticket.StartResources:
		n.met.acquisitions.WithLabelValues(name).Inc()
		if n.opt.Resources != nil {
			g := Grant{Term: e.Term, Expires: n.leaseWall(e.LeaseEnd), Forced: e.Forced}
			n.work(r, func(ctx context.Context) {
				if err := n.opt.Resources.Grant(ctx, name, g); err != nil {
					n.met.resourceErrors.WithLabelValues(name, "grant").Inc()
					n.log.Error("granting the ticket locally failed", "ticket", name, "term", g.Term, "err", err)
				}
			})
		}
	case ticket.LeaseRenewed:
		n.met.renewals.WithLabelValues(name).Inc()
		if n.opt.Resources != nil {
			exp, term := n.leaseWall(e.LeaseEnd), e.Term
			n.work(r, func(ctx context.Context) {
				if err := n.opt.Resources.Renewed(ctx, name, term, exp); err != nil {
					n.met.resourceErrors.WithLabelValues(name, "renew").Inc()
					n.log.Warn("recording the renewed lease locally failed", "ticket", name, "err", err)
				}
			})
		}
	case ticket.StopResources:
		tok, why := e.Token, e.Reason
		n.work(r, func(ctx context.Context) {
			if n.opt.Resources != nil {
				if err := n.opt.Resources.Revoke(ctx, name); err != nil {
					// The resources driver retries and escalates (it may end
					// the process so the local cluster fences); the lease
					// runs out regardless.
					n.met.resourceErrors.WithLabelValues(name, "revoke").Inc()
					n.log.Error("revoking the ticket locally failed", "ticket", name, "reason", why, "err", err)
					return
				}
			}
			n.send(name, ticket.Stopped{Token: tok})
		})
	case ticket.RunHandler:
		go n.runHandler(name, r, e)
	case ticket.PrepareHandover:
		to := r.cl.Members[e.To].Name
		tok := e.Token
		go func() {
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
			n.send(name, ticket.HandoverDone{Token: tok, OK: ok})
		}()
	case ticket.Reply:
		n.mu.Lock()
		ch := n.pending[e.ID]
		delete(n.pending, e.ID)
		n.mu.Unlock()
		if ch != nil {
			ch <- e
		}
	case ticket.Event:
		n.onEvent(name, r, e)
	}
}

// work queues fn on the ticket's worker, with the resource timeout.
func (n *Node) work(r *rt, fn func(ctx context.Context)) {
	r.work <- func() {
		ctx, cancel := context.WithTimeout(context.Background(), n.opt.ResourceTimeout)
		defer cancel()
		fn(ctx)
	}
}

// leaseWall converts a lease end (monotonic) to wall time; zero for none.
func (n *Node) leaseWall(end time.Duration) time.Time {
	if end <= 0 || end == time.Duration(1<<63-1) {
		return time.Time{}
	}
	return wallOf(n.clock, end)
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
			n.send(name, ticket.HandlerDone{Token: e.Token, OK: false})
			return
		}
	}
	if len(argv) == 0 {
		n.send(name, ticket.HandlerDone{Token: e.Token, OK: true})
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
	env := map[string]string{"TICKET": name, "LOCAL": n.cfg.Local, "CONF_PATH": n.cfg.Path,
		"CONF_NAME": n.cfg.Cluster.Name, "TICKET_EXPIRES": expires}
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
	n.send(name, ticket.HandlerDone{Token: e.Token, OK: err == nil})
}

func trimOutput(b []byte) string {
	const max = 512
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return string(b)
}
