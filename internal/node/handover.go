package node

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/geobooth/geobooth/booth/handover"
	"github.com/geobooth/geobooth/ticket"
	"github.com/geobooth/geobooth/ticket/engine"
)

// importBooth carries the tickets' state over from a Booth run of this
// member (the handover file a Booth-mode geoboothd leaves in the state
// folder; package handover). For each ticket the file lists, what the
// member last promised under Booth becomes its durable state, replacing
// any older state of its own; when the Booth run did not end cleanly, the
// ticket starts as on a member that lost its state. The file is marked
// imported once that is on disk. The imported state is one a member of
// geobooth's protocol could have stored: its promise went to Acked (or to
// nobody it can name), so its restart window lets it vote for that site
// only, and the site that held the ticket re-acquires at once under the
// lease its CIB records (docs/booth.md, the cut-over).
func (n *Node) importBooth(stored map[string]*engine.Record) error {
	dir := n.cfg.StateDir
	f, err := handover.Read(dir)
	if err != nil || f == nil {
		return err
	}
	self := n.cfg.Members[n.cfg.Self]
	// Booth tells members apart by address: one that two members share
	// names neither.
	byAddr := map[netip.Addr]string{}
	for _, m := range n.cfg.Members {
		if a, ok := hostAddr(m.Address); ok {
			if _, dup := byAddr[a]; dup {
				byAddr[a] = ""
			} else {
				byAddr[a] = m.Name
			}
		}
	}
	if byAddr[f.Self.Unmap()] != self.Name {
		return fmt.Errorf("the Booth handover %s was left by the Booth member %s, which is not this member (%s at %s): move it away to start without state",
			handover.Path(dir), f.Self, self.Name, self.Address)
	}
	names := make([]string, len(n.cfg.Members))
	for i, m := range n.cfg.Members {
		names[i] = m.Name
	}
	var recs []engine.Record
	var wiped []string
	for _, t := range f.Tickets {
		if _, known := n.rts[t.Name]; !known {
			continue
		}
		if !f.Complete {
			wiped = append(wiped, t.Name)
			continue
		}
		mode := ticket.Auto
		if t.Manual {
			mode = ticket.Manual
		}
		recs = append(recs, engine.Record{Ticket: t.Name, Term: t.Term, Acked: byAddr[t.Acked.Unmap()], Owner: byAddr[t.Owner.Unmap()],
			Managed: t.Granted, Binding: t.Binding, Mode: mode.String(), Members: names, Digest: n.cfg.Digest})
	}
	errs := []error{n.store.remove(wiped)}
	for _, err := range n.store.saveAll(recs) {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("import the Booth handover: %w", err)
	}
	for _, name := range wiped {
		stored[name] = nil
		n.log.Warn("the Booth run before this start did not end cleanly: the ticket starts without state (abstaining for one lease)", "ticket", name)
	}
	for i, r := range recs {
		stored[r.Ticket] = &recs[i]
		n.log.Info("ticket state imported from the Booth protocol", "ticket", r.Ticket, "term", r.Term,
			"acked", r.Acked, "owner", r.Owner, "granted", r.Managed, "left", f.Written)
	}
	return handover.MarkImported(dir)
}

// hostAddr is the IP address of a host:port, if it is one.
func hostAddr(hostport string) (netip.Addr, bool) {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(host)
	return a.Unmap(), err == nil
}
