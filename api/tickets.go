package api

import "time"

// Ticket is one ticket in API answers and `ticketctl list --json`.
type Ticket struct {
	Name           string            `json:"name"`
	Owner          string            `json:"owner"`
	Term           uint64            `json:"term"`
	Mode           string            `json:"mode"`
	State          string            `json:"state"`
	LeaseRemaining float64           `json:"lease_remaining_s"`
	HeldLocally    bool              `json:"held_locally"`
	Managed        bool              `json:"managed"`
	Local          string            `json:"local"`
	Expires        *time.Time        `json:"expires,omitempty"`
	SafeUntil      *time.Time        `json:"safe_until,omitempty"`
	LastChange     *time.Time        `json:"last_change,omitempty"`
	Reason         string            `json:"reason,omitempty"`
	Attrs          map[string]string `json:"attrs"`
	Expire         float64           `json:"expire_s"`
}

// CommandResult answers a mutation.
type CommandResult struct {
	OK     bool   `json:"ok"`
	Detail string `json:"detail,omitempty"`
	Error  string `json:"error,omitempty"`
}

// GrantRequest is the body of POST .../grant.
type GrantRequest struct {
	Site  string `json:"site"`
	Force bool   `json:"force"`
}

// RevokeRequest is the body of POST .../revoke.
type RevokeRequest struct {
	Force bool `json:"force"`
}

// MoveRequest is the body of POST .../move.
type MoveRequest struct {
	Site string `json:"site"`
}

// AttrRequest is the body of PUT .../attrs/{attr}.
type AttrRequest struct {
	Value string `json:"value"`
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

// Event is one entry of the timeline.
type Event struct {
	// Seq orders the events of this member: it only rises, also across
	// restarts (it starts from the wall clock), so a client resumes a
	// stream after the last Seq it saw.
	Seq    uint64    `json:"seq"`
	Time   time.Time `json:"time"`
	Ticket string    `json:"ticket"`
	Kind   string    `json:"kind"`
	Term   uint64    `json:"term"`
	Owner  string    `json:"owner"`
	Reason string    `json:"reason"`
}
