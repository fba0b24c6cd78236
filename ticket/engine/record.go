package engine

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/geobooth/geobooth/ticket"
)

// Record is one ticket's durable state as it is stored: members are named,
// so that a member list written in another order means the same, and the
// configuration it was written under comes with it.
type Record struct {
	Ticket    string        `json:"ticket"`
	Term      uint64        `json:"term"`
	Acked     string        `json:"acked,omitempty"`
	Owner     string        `json:"owner,omitempty"`
	Managed   bool          `json:"managed"`
	Attrs     []ticket.Attr `json:"attrs,omitempty"`
	AttrClock uint64        `json:"attr_clock"`
	// Binding: see ticket.Persistent.
	Binding time.Duration `json:"binding_ns"`
	// Mode is the ticket's mode when written ("" when unknown: a record
	// from before modes were stored).
	Mode string `json:"mode,omitempty"`
	// Members are the cluster's member names, in the order of the
	// configuration the record was written under.
	Members []string `json:"members"`
	// Digest is that configuration's digest.
	Digest uint64 `json:"digest"`
}

// Errors of Boot: configuration changes that are not safe online.
var (
	ErrMembershipChanged = errors.New("the cluster's member list changed")
	ErrModeChanged       = errors.New("the ticket's mode changed while it is granted")
)

// record turns a ticket's durable state into what is stored.
func (e *Engine) record(t *tk) Record {
	p := t.st.P
	name := func(i int) string { return t.cl.Name(i) }
	return Record{Ticket: t.cfg.Name, Term: p.Term, Acked: name(p.Acked), Owner: name(p.Owner), Managed: p.Managed,
		Attrs: slices.Clone(p.Attrs), AttrClock: p.AttrClock, Binding: p.Binding, Mode: t.cfg.Mode.String(),
		Members: e.memberNames(), Digest: e.cfg.Digest}
}

func (e *Engine) memberNames() []string {
	names := make([]string, len(e.cfg.Members))
	for i, m := range e.cfg.Members {
		names[i] = m.Name
	}
	return names
}

// persistent reads a stored record back under the current configuration,
// or says why it cannot be used without the operator.
func (e *Engine) persistent(t *tk, r *Record, acceptMembers bool) (*ticket.Persistent, error) {
	if added, removed := diffNames(e.memberNames(), r.Members); len(added)+len(removed) > 0 && !acceptMembers {
		return nil, fmt.Errorf("ticket %q: %w (added %s; removed %s): two majorities of the old and the new list may not meet, so a member list is changed only with every member stopped: stop all members, change every file, then start each once with -accept-membership-change",
			t.cfg.Name, ErrMembershipChanged, listOrNone(added), listOrNone(removed))
	}
	if r.Mode != "" && r.Mode != t.cfg.Mode.String() && r.Managed {
		return nil, fmt.Errorf("ticket %q: %w (%s to %s): revoke it first (ticketctl revoke %s), change the mode on every member, then grant it again",
			t.cfg.Name, ErrModeChanged, r.Mode, t.cfg.Mode, t.cfg.Name)
	}
	p := &ticket.Persistent{Term: r.Term, Acked: t.cl.Index(r.Acked), Owner: t.cl.Index(r.Owner), Managed: r.Managed,
		Attrs: slices.Clone(r.Attrs), AttrClock: r.AttrClock, Binding: r.Binding}
	if r.Mode != "" && r.Mode != t.cfg.Mode.String() {
		// The ticket is not managed (see above): what this member
		// acknowledged under the other mode binds it to nobody under this
		// one (a manual ticket's lock would otherwise come from an old
		// vote). Its restart window still covers any promise given.
		p.Acked = ticket.None
	}
	return p, nil
}

// diffNames lists the names of now missing from before, and those of
// before missing from now.
func diffNames(now, before []string) (added, removed []string) {
	for _, n := range now {
		if !slices.Contains(before, n) {
			added = append(added, n)
		}
	}
	for _, n := range before {
		if !slices.Contains(now, n) {
			removed = append(removed, n)
		}
	}
	sort.Strings(added)
	sort.Strings(removed)
	return added, removed
}

func listOrNone(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}
