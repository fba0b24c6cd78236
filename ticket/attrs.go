package ticket

import (
	"hash/fnv"
	"sort"
	"strconv"
	"time"
)

// Ticket attributes (Booth's geostore) are replicated to every member and
// merged last-writer-wins by (Version, Writer); a deletion is a tombstone so
// it wins over older values.

func (s *State) attr(name string) (string, bool) {
	for _, a := range s.P.Attrs {
		if a.Name == name {
			return a.Value, !a.Deleted
		}
	}
	return "", false
}

// ValidAttr checks an attribute name and value against the limits.
func ValidAttr(name, value string) bool {
	if name == "" || len(name) > MaxAttrNameLen || len(value) > MaxAttrValueLen {
		return false
	}
	for _, r := range name {
		if r <= ' ' || r > '~' {
			return false
		}
	}
	return true
}

func (s *State) setAttr(o *out, c Command, now time.Duration) {
	if !ValidAttr(c.Attr, c.Value) {
		reply(o, c.ID, ErrBadAttr, "attribute names have 1 to %d printable characters, values at most %d bytes", MaxAttrNameLen, MaxAttrValueLen)
		return
	}
	s.P.AttrClock++
	a := Attr{Name: c.Attr, Value: c.Value, Version: s.P.AttrClock, Writer: uint16(s.self()), Deleted: c.Op == OpAttrDelete}
	if a.Deleted {
		a.Value = ""
	}
	if !s.mergeAttr(a) {
		reply(o, c.ID, ErrTooManyAttrs, "a ticket has at most %d attributes", MaxAttrs)
		return
	}
	o.persist = true
	s.startRound(o, &s.attrs, MsgAttrs, s.P.Term, ReasonNone, 0, None, now)
	reply(o, c.ID, nil, "attribute %s %s", c.Attr, c.Op)
}

// mergeAttr applies a if it is newer than what we have; false when the set
// is full.
func (s *State) mergeAttr(a Attr) bool {
	if a.Version > s.P.AttrClock {
		s.P.AttrClock = a.Version
	}
	for i, b := range s.P.Attrs {
		if b.Name == a.Name {
			if a.Version > b.Version || (a.Version == b.Version && a.Writer > b.Writer) {
				s.P.Attrs[i] = a
			}
			return true
		}
	}
	if len(s.P.Attrs) >= MaxAttrs {
		return false
	}
	s.P.Attrs = append(s.P.Attrs, a)
	sort.Slice(s.P.Attrs, func(i, j int) bool { return s.P.Attrs[i].Name < s.P.Attrs[j].Name })
	return true
}

// mergeAttrs merges a peer's set; it reports whether anything changed.
func (s *State) mergeAttrs(in []Attr) bool {
	before := attrDigest(s.P.Attrs)
	for _, a := range in {
		if ValidAttr(a.Name, a.Value) {
			s.mergeAttr(a)
		}
	}
	return attrDigest(s.P.Attrs) != before
}

func (s *State) onAttrs(o *out, m Message) {
	if s.mergeAttrs(m.Attrs) {
		o.persist = true
	}
	ack := s.msg(MsgAttrsAck, m.From)
	ack.Round, ack.OK = m.Round, true
	o.msgs = append(o.msgs, ack)
	if attrDigest(s.P.Attrs) != attrDigest(m.Attrs) && m.Round == 0 {
		// An exchange started by a digest mismatch: send ours back.
		back := s.msg(MsgAttrs, m.From)
		back.Round = 1
		back.Attrs = append([]Attr(nil), s.P.Attrs...)
		o.msgs = append(o.msgs, back)
	}
}

// attrDigest summarises a set so members notice they differ.
func attrDigest(as []Attr) uint64 {
	if len(as) == 0 {
		return 0
	}
	h := fnv.New64a()
	for _, a := range as {
		h.Write([]byte(a.Name))
		h.Write([]byte{0})
		h.Write([]byte(a.Value))
		h.Write([]byte{0})
		h.Write([]byte(strconv.FormatUint(a.Version, 10)))
		h.Write([]byte{byte(a.Writer), byte(a.Writer >> 8)})
		if a.Deleted {
			h.Write([]byte{1})
		}
	}
	return h.Sum64()
}

// onSyncResp merges what another member knows after our restart. A member
// that lost its state learns the term; on a manual ticket it votes again
// only once enough members (N-Q+1, which meets every granting majority)
// said nobody is locked, or an owner announced itself.
func (s *State) onSyncResp(o *out, m Message, now time.Duration) {
	if s.mergeAttrs(m.Attrs) {
		o.persist = true
	}
	if s.hold == follower && m.Site != None && m.Site != s.self() && m.Term >= s.P.Term && s.cl.IsSite(m.Site) && m.Remaining > 0 {
		exp := now + m.Remaining
		if m.Remaining == forever {
			exp = forever
		}
		if s.viewOwner == None || s.viewOwner == m.Site {
			s.setView(o, m.Site, m.Term, exp, now, false)
		}
	}
	if !s.wiped || s.synced {
		return
	}
	if m.Term > s.P.Term {
		s.P.Term = m.Term
		o.persist = true
	}
	if m.Flags&FlagManaged != 0 && !s.P.Managed {
		s.P.Managed = true
		o.persist = true
	}
	if !s.manual() {
		return
	}
	if m.Acked != None {
		// Somebody is locked to a site: wait for its owner to announce
		// itself (a Renew) or to release.
		s.syncFrom = 0
		return
	}
	s.syncFrom |= 1 << uint(m.From)
	if popcount(s.syncFrom) >= s.cl.syncNeeded() {
		s.synced = true
		if s.P.Term > 0 {
			s.event(o, EvSynced, None, now, "learned the ticket state from %d members", popcount(s.syncFrom))
		}
	}
}
