package node

import (
	"time"

	"github.com/geobooth/geobooth/api"
)

// Peer is one member as this member sees it (the API's type).
type Peer = api.Peer

// MemberStatus is what the membership layer (serf) says of a member.
type MemberStatus struct {
	Status string // alive, suspect, failed, left, leaving
	Tags   map[string]string
}

// Membership reports serf's view of the members, by name.
type Membership interface {
	MemberStatus() map[string]MemberStatus
}

// SetMembership gives the node serf's view for Peers. Call before Run.
func (n *Node) SetMembership(m Membership) { n.membership = m }

// Peers lists every member.
func (n *Node) Peers() []Peer {
	var ms map[string]MemberStatus
	if n.membership != nil {
		ms = n.membership.MemberStatus()
	}
	out := make([]Peer, 0, len(n.cfg.Members))
	ownZones := ms[n.cfg.local()].Tags["zones"]
	for i, m := range n.cfg.Members {
		p := Peer{Name: m.Name, Role: m.Role.String(), Address: m.Address, API: m.API, Status: "unknown"}
		if s, ok := ms[m.Name]; ok {
			p.Status = s.Status
			p.Version = s.Tags["version"]
			p.ConfigDigest = s.Tags["digest"]
			p.Wire = s.Tags["wire"]
			p.ZonesDigest = s.Tags["zones"]
			p.ZonesMismatch = ownZones != "" && p.ZonesDigest != "" && p.ZonesDigest != ownZones
		}
		if i == n.cfg.Self {
			p.Status = "self"
		} else {
			info := n.tr.Peer(i)
			if !info.LastHeard.IsZero() {
				t := info.LastHeard
				p.LastHeard = &t
				p.ClockOffsetMS = float64(info.Offset) / float64(time.Millisecond)
			}
			p.ConfigMismatch = info.Mismatch
		}
		out = append(out, p)
	}
	return out
}
