package node

import "time"

// MemberStatus is what the membership layer (serf) says of a member.
type MemberStatus struct {
	Status string // alive, suspect, failed, left, leaving
	Tags   map[string]string
}

// Membership reports serf's view of the members, by name.
type Membership interface {
	MemberStatus() map[string]MemberStatus
}

// Peer is one member as this member sees it, for `ticketctl peers`.
type Peer struct {
	Name    string `json:"name"`
	Role    string `json:"role"`
	Address string `json:"address"`
	API     string `json:"api,omitempty"`
	// Status: self, alive, failed, left, leaving, unknown (serf's view).
	Status string `json:"status"`
	// LastHeard: the last authenticated ticket datagram from it.
	LastHeard *time.Time `json:"last_heard,omitempty"`
	// ClockOffset: its wall clock minus ours, as seen in that datagram.
	ClockOffsetMS  float64 `json:"clock_offset_ms"`
	ConfigMismatch bool    `json:"config_mismatch"`
	Version        string  `json:"version,omitempty"`
	ConfigDigest   string  `json:"config_digest,omitempty"`
	// Wire: the protocol versions it speaks ("ticket/1 replication/1").
	Wire string `json:"wire,omitempty"`
	// ZonesDigest summarises the DNS zones it serves; ZonesMismatch: they
	// differ from this member's (both serve DNS).
	ZonesDigest   string `json:"zones_digest,omitempty"`
	ZonesMismatch bool   `json:"zones_mismatch"`
}

// SetMembership gives the node serf's view for Peers. Call before Run.
func (n *Node) SetMembership(m Membership) { n.membership = m }

// Peers lists every member.
func (n *Node) Peers() []Peer {
	var ms map[string]MemberStatus
	if n.membership != nil {
		ms = n.membership.MemberStatus()
	}
	out := make([]Peer, 0, len(n.cfg.Cluster.Members))
	ownZones := ms[n.cfg.Local].Tags["zones"]
	for i, m := range n.cfg.Cluster.Members {
		p := Peer{Name: m.Name, Role: m.Role, Address: m.Address, API: m.API, Status: "unknown"}
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
