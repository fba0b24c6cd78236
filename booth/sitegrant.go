package booth

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Grant types of attr-prereq lines.
const (
	grantAuto   = "auto"
	grantManual = "manual"
)

// Client options (the header's options field).
const (
	OptionForce      = 1 // grant -F: no delayed commit
	OptionWaitCommit = 4 // grant -C: wait while the CIB write is pending
)

// LoadCIB gives a site what its CIB holds of a ticket at start (Booth's
// load_ticket): whether it is granted here, the owner's site id, the
// lease's end on the engine's clock (zero: none), the term and the
// geostore attributes. Call before Start.
func (a *Engine) LoadCIB(ticket string, granted bool, owner uint32, expires time.Duration, term uint32, attrs map[string]string) {
	t := a.byName[ticket]
	if t == nil || !a.site {
		return
	}
	t.isGranted, t.term, t.expires = granted, term, expires
	for k, v := range attrs {
		t.attrs[k] = geoAttr{value: v}
	}
	if _, ok := a.members[owner]; ok {
		t.leader = owner
	} else if granted {
		// Granted here with an owner this configuration does not know:
		// Booth takes it as this site's.
		t.leader = a.self.ID
	}
}

// SiteAnswer is a client's grant or revoke at a site (Booth's
// process_client_request): the reply now, and whether the client waits
// for the outcome (Notify).
func (a *Engine) SiteAnswer(now time.Duration, m Message) (Message, bool) {
	t := a.byName[m.Ticket.Name]
	var rv Code
	switch {
	case !m.HasTicket || t == nil:
		rv = ResultInvalid
	case m.Cmd == CmdGrant && !t.cfg.Manual && t.owned():
		rv = ResultOver
	case m.Cmd == CmdClientRevoke && !t.owned():
		rv = ResultIdle
	case m.Cmd == CmdClientRevoke && t.leader != a.self.ID:
		rv = ResultRedirect
	case m.Cmd == CmdClientRevoke:
		rv = a.revoke(t, now)
	case m.Cmd == CmdGrant:
		rv = a.grant(t, now, m.Options)
	default:
		rv = ResultInvalid
	}
	if t != nil && rv == ResultMore {
		t.waiting = true
	}
	return a.message(t, now, CmdResult, 0, rv), rv == ResultMore
}

// Waited says a ticket's waiting clients were all answered.
func (a *Engine) Waited(ticket string) {
	if t := a.byName[ticket]; t != nil {
		t.waiting = false
	}
}

// grant is do_grant_ticket: an election for this site, whose CIB write
// waits a lease plus acquire-after unless every site answers or -F.
func (a *Engine) grant(t *bTicket, now time.Duration, options uint32) Code {
	if t.leader == a.self.ID {
		return 0
	}
	if t.owned() && !(t.cfg.Manual && options&OptionForce != 0) {
		return ResultOver
	}
	t.delayCommit = now + t.cfg.Expire + t.cfg.AcquireAfter
	if options&OptionForce != 0 {
		t.delayCommit = 0
	}
	if rv := a.acquire(t, now, ReasonAdmin); rv != 0 {
		t.delayCommit = 0
		return rv
	}
	return ResultMore
}

// revoke is do_revoke_ticket: at once, or once the request under way is
// answered.
func (a *Engine) revoke(t *bTicket, now time.Duration) Code {
	if t.acksExpected != 0 {
		t.next = nextInit
		return ResultMore
	}
	a.startRevoke(t, now)
	return 0
}

// startRevoke is start_revoke_ticket.
func (a *Engine) startRevoke(t *bTicket, now time.Duration) {
	t.commit()
	a.revokeHere(t, now)
	a.write(t, now)
	a.broadcast(t, now, CmdRevoke, CmdAck, 0, ReasonAdmin)
}

// acquire is acquire_ticket: the attribute prerequisites of a manual
// grant, the handler, then an election (or the manual selection).
func (a *Engine) acquire(t *bTicket, now time.Duration, reason Code) Code {
	if reason == ReasonAdmin && a.prereqFails(t, grantManual) {
		return ResultAttrPrereq
	}
	switch a.runHandler(t, now, false) {
	case 0:
	case ResultMore:
		return 0
	default:
		return ResultInProgress
	}
	if t.cfg.Manual {
		a.manualSelection(t, now)
		return 0
	}
	a.newElection(t, now, a.self.ID, 1, reason)
	return 0
}

// manualSelection: a manual ticket is this site's at once, without
// expiry or votes.
func (a *Engine) manualSelection(t *bTicket, now time.Duration) {
	t.setLeader(a.self.ID)
	t.state = StateLeader
	t.electionEnd, t.delayCommit = 0, 0
	t.commit()
	a.broadcast(t, now, CmdHeartbeat, CmdAck, 0, 0)
	t.updated = 0
}

// prereqFails is check_attr_prereq: an "eq" prerequisite of that grant
// type fails unless the geostore attribute has the value, a "ne" one if
// it has.
func (a *Engine) prereqFails(t *bTicket, grant string) bool {
	for _, p := range t.cfg.AttrPrereqs {
		v, ok := t.attrs[p.Name]
		has := ok && v.value == p.Value
		if p.Grant == grant && (p.Op == "eq" && !has || p.Op == "ne" && has) {
			return true
		}
	}
	return false
}

// geoAttr is a geostore attribute: its value and when it was set here
// (zero when read from the CIB at start).
type geoAttr struct {
	value   string
	updated time.Time
}

// SetAttr is geostore set: the attribute is kept here (and, by the shell,
// in the CIB). wall is the time it is set.
func (a *Engine) SetAttr(ticket, name, value string, wall time.Time) Code {
	t := a.byName[ticket]
	if t == nil || !a.site {
		return ResultInvalid
	}
	t.attrs[name] = geoAttr{value: value, updated: wall}
	return 0
}

// DelAttr is geostore delete.
func (a *Engine) DelAttr(ticket, name string) Code {
	t := a.byName[ticket]
	switch {
	case t == nil || !a.site:
		return ResultInvalid
	case !hasAttr(t, name):
		return ResultNoAttr
	}
	delete(t.attrs, name)
	return 0
}

func hasAttr(t *bTicket, name string) bool { _, ok := t.attrs[name]; return ok }

// GetAttr is geostore get: the value, as Booth answers it (one line).
func (a *Engine) GetAttr(ticket, name string) (string, Code) {
	t := a.byName[ticket]
	switch {
	case t == nil || !a.site:
		return "", ResultInvalid
	case !hasAttr(t, name):
		return "", ResultNoAttr
	}
	return t.attrs[name].value + "\n", 0
}

// ListAttrs is geostore list: a line per attribute, "name value" and
// when it was set here (local time), in name order.
func (a *Engine) ListAttrs(ticket string) (string, Code) {
	t := a.byName[ticket]
	if t == nil || !a.site {
		return "", ResultInvalid
	}
	names := make([]string, 0, len(t.attrs))
	for n := range t.attrs {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		at := ""
		if v := t.attrs[n]; !v.updated.IsZero() {
			at = v.updated.Local().Format(time.DateTime)
		}
		fmt.Fprintf(&b, "%s %s %s\n", n, t.attrs[n].value, at)
	}
	return b.String(), 0
}

// runHandler is do_ext_prog: 0 when there is no handler or it passed,
// ResultMore while it runs, else a failure (after which a leader steps
// down).
func (a *Engine) runHandler(t *bTicket, now time.Duration, startElection bool) Code {
	if len(t.cfg.BeforeAcquireHandler) == 0 && !t.guarded {
		return 0
	}
	switch t.handler {
	case handlerIdle:
		t.handler = handlerRunning
		a.eff.RunHandler = append(a.eff.RunHandler, t.cfg.Name)
		return ResultMore
	case handlerExited:
		t.handler = handlerIdle
		if t.handlerFailed {
			a.handlerFailed(t, now, startElection)
			return ResultInProgress
		}
		return 0
	case handlerRunning:
		return ResultMore
	}
	return 0
}

// Guarded gives the ticket a check of the shell's as a before-acquire
// handler (Server.UseGuard), even when booth.conf gives it none.
func (a *Engine) Guarded(ticket string) {
	if t := a.byName[ticket]; t != nil {
		t.guarded = true
	}
}

// HandlerDone reports the end of a ticket's handler (ok: exit status 0).
func (a *Engine) HandlerDone(ticket string, ok bool) {
	t := a.byName[ticket]
	if t == nil {
		return
	}
	switch t.handler {
	case handlerRunning:
		t.handler, t.handlerFailed = handlerExited, !ok
	case handlerIgnored:
		t.handler = handlerIdle
	}
}

// ignoreHandler is ignore_ext_test: a running handler is stopped and its
// result will not count.
func (a *Engine) ignoreHandler(t *bTicket) {
	switch t.handler {
	case handlerRunning:
		t.handler = handlerIgnored
		a.eff.StopHandler = append(a.eff.StopHandler, t.cfg.Name)
	case handlerExited:
		t.handler = handlerIdle
	}
}

// handlerFailed is ext_prog_failed: the leader of an automatic ticket
// steps down (a vote for nobody, so that the others elect at once); a
// manual ticket is given up here.
func (a *Engine) handlerFailed(t *bTicket, now time.Duration, startElection bool) {
	if !t.cfg.Manual {
		if t.leader != a.self.ID || t.left(now) == 0 {
			return
		}
		t.commit()
		a.resetSite(t, now)
		a.write(t, now)
		if startElection {
			a.broadcast(t, now, CmdVoteFor, CmdRequestVote, 0, ReasonLocalFail)
		}
		return
	}
	if t.leader != a.self.ID {
		return
	}
	t.commit()
	a.resetSite(t, now)
	a.write(t, now)
}
