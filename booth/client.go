package booth

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Answer is a client request's reply (a Rslt ticket message), as Booth's
// process_client_request gives it at an arbitrator: a grant cannot be
// done here (the booth client refuses before asking; this refuses too),
// a revoke of a free ticket is idle, one of an owned ticket is
// redirected to the leader.
func (a *Engine) Answer(now time.Duration, m Message) Message {
	t := a.byName[m.Ticket.Name]
	var result Code
	switch {
	case !m.HasTicket || t == nil:
		result = ResultInvalid
	case m.Cmd == CmdGrant && !t.cfg.Manual && t.owned():
		result = ResultOver
	case m.Cmd == CmdGrant:
		result = ResultInvalid
	case !t.owned():
		result = ResultIdle
	default:
		result = ResultRedirect
	}
	return a.message(t, now, CmdResult, 0, result)
}

// TicketView is what this member knows of a ticket.
type TicketView struct {
	Name  string
	State State
	// Leader is the owner's address, or the zero Addr: Revoked says
	// whether that is after a revoke ("none") or not known ("NONE").
	Leader  netip.Addr
	Revoked bool
	Term    uint32
	// Expires is the lease's end on the caller's monotonic clock; zero
	// when the ticket has no owner.
	Expires time.Duration
	// SafeUntil is until when an observer here (this member's DNS, its
	// status page) may take Leader as the owner: the end of the lease as
	// this member follows it. No other site can be elected before then,
	// since that needs this member's vote, which it refuses while the
	// lease runs; and the leader keeps its lease at least as long, since
	// the time it sent was truncated and then travelled. Zero when there
	// is no owner to trust (manual tickets, whose leases do not expire,
	// included: they are Booth's, not bounded).
	SafeUntil time.Duration
	Manual    bool
	// Attrs are a site's geostore attributes.
	Attrs map[string]string
}

// Tickets lists the tickets in configuration order.
func (a *Engine) Tickets() []TicketView {
	out := make([]TicketView, 0, len(a.tickets))
	for _, t := range a.tickets {
		v := TicketView{Name: t.cfg.Name, State: t.state, Term: t.term, Manual: t.cfg.Manual, Revoked: t.leader == NoLeader}
		if len(t.attrs) > 0 {
			v.Attrs = map[string]string{}
			for k, a := range t.attrs {
				v.Attrs[k] = a.value
			}
		}
		if t.owned() {
			v.Leader = a.members[t.leader].Address
			v.Expires = t.expires
			if !t.cfg.Manual {
				v.SafeUntil = t.expires
			}
		}
		out = append(out, v)
	}
	return out
}

// List is the text of Booth's list answer: one line per ticket with its
// leader and, when owned, its expiry in local time (wall is the wall
// clock at the monotonic time now).
func (a *Engine) List(now time.Duration, wall time.Time) string {
	var b strings.Builder
	for _, v := range a.Tickets() {
		leader := "NONE"
		switch {
		case v.Leader.IsValid():
			leader = v.Leader.String()
		case v.Revoked:
			leader = "none"
		}
		fmt.Fprintf(&b, "ticket: %s, leader: %s", v.Name, leader)
		if v.Leader.IsValid() {
			exp := "INF"
			if !v.Manual {
				exp = wall.Add(v.Expires - now).Local().Format(time.DateTime)
			}
			fmt.Fprintf(&b, ", expires: %s", exp)
		}
		if v.Manual {
			b.WriteString(" [manual mode]")
		}
		b.WriteString("\n")
	}
	// A manual ticket that more than one site leads (after grant -F), as
	// Booth warns of it.
	for _, t := range a.tickets {
		var at []string
		for _, m := range a.order {
			if t.granted[m.ID] {
				at = append(at, m.Address.String())
			}
		}
		if len(at) > 1 {
			fmt.Fprintf(&b, "\nWARNING: The ticket %s is granted to multiple sites: %s. Revoke the ticket from the faulty sites.\n",
				t.cfg.Name, strings.Join(at, ", "))
		}
	}
	return b.String()
}
