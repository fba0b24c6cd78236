package api

import "time"

// Role is a volume's role: only the primary accepts writes ("primary",
// "secondary").
type Role string

// DiskState is how good a replica's data is, as DRBD tracks it
// ("UpToDate", "Consistent", "Outdated", "Inconsistent", …).
type DiskState string

// PeerState is the replication state with one peer, as a replica sees it
// ("InSync", "Ahead", "SyncSource", "SplitBrain", …).
type PeerState string

// Volume is a replicated volume's state at one site
// (GET /api/v1/replication).
type Volume struct {
	Volume      string    `json:"volume"`
	Ticket      string    `json:"ticket,omitempty"`
	Role        Role      `json:"role"`
	Disk        DiskState `json:"disk"`
	Size        int64     `json:"size"`
	Generation  string    `json:"generation"`
	Export      string    `json:"export,omitempty"`
	SplitBrains int       `json:"split_brains"`
	// Discarded counts the blocks this replica wrote that a resync
	// replaced with the peer's different data (a split brain lost, a
	// crash as primary with writes not replicated): data lost here.
	Discarded uint64 `json:"discarded_blocks"`
	// Verify is the running online verify, or the last one.
	Verify *VerifyJob   `json:"verify,omitempty"`
	Peers  []VolumePeer `json:"peers"`
}

// VolumePeer is the replication state with one peer.
type VolumePeer struct {
	Name            string    `json:"name"`
	State           PeerState `json:"state"`
	Connected       bool      `json:"connected"`
	PeerRole        Role      `json:"peer_role,omitempty"`
	PeerDisk        DiskState `json:"peer_disk,omitempty"`
	LagBytes        int64     `json:"lag_bytes"`
	LagSeconds      float64   `json:"lag_seconds"`
	DirtyBlocks     uint64    `json:"dirty_blocks"`
	ResyncTotal     int64     `json:"resync_total_bytes"`
	ResyncRemaining int64     `json:"resync_remaining_bytes"`
	LastError       string    `json:"last_error,omitempty"`
}

// VerifyJob is the running verify, or the last one.
type VerifyJob struct {
	Peer      string     `json:"peer"`
	Repair    bool       `json:"repair"`
	Running   bool       `json:"running"`
	Started   time.Time  `json:"started"`
	Ended     *time.Time `json:"ended,omitempty"`
	Total     int64      `json:"total_blocks"`
	Checked   int64      `json:"checked_blocks"`
	Differing int        `json:"differing_blocks"`
	// First differing blocks (at most 100), when it ended.
	First    []int64 `json:"first_differing,omitempty"`
	Resynced bool    `json:"resynced"`
	Error    string  `json:"error,omitempty"`
}

// VerifyRequest is the body of POST /api/v1/replication/{volume}/verify
// (served by sites with volumes).
type VerifyRequest struct {
	Peer   string `json:"peer"`
	Repair bool   `json:"repair"`
}

// ResizeRequest is the body of POST /api/v1/replication/{volume}/resize.
type ResizeRequest struct {
	// Size is the new size: bytes, or "128MiB", "1GiB".
	Size string `json:"size"`
}
