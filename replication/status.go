package replication

import (
	"fmt"
	"time"
)

// Status is a volume's state for ticketctl repl, the API and the
// dashboard.
type Status struct {
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
	Peers  []PeerStatus `json:"peers"`
}

// PeerStatus is the replication state with one peer.
type PeerStatus struct {
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

// Status reports the volume's state now.
func (v *Volume) Status() Status {
	v.mu.Lock()
	st := Status{Volume: v.cfg.Name, Ticket: v.cfg.Ticket, Role: v.role, Disk: v.m.Disk, Size: v.Size(),
		Generation: fmt.Sprintf("%016x", v.m.Current), SplitBrains: v.splitBrains, Discarded: v.discarded}
	if v.job != nil {
		j := *v.job
		st.Verify = &j
	}
	v.mu.Unlock()
	if st.Role == Primary && v.cfg.NBDListen != "" {
		st.Export = "nbd://" + v.cfg.NBDListen + "/" + v.cfg.Export
	}
	for _, name := range v.order {
		p := v.peers[name]
		lagB, lagT := p.lag()
		p.mu.Lock()
		ps := PeerStatus{Name: name, State: p.state, Connected: p.conn != nil, PeerRole: p.remoteRole,
			LagBytes: lagB, LagSeconds: lagT.Round(time.Millisecond).Seconds(), DirtyBlocks: p.bm.ones(),
			LastError: p.lastErr}
		if p.conn != nil {
			ps.PeerDisk = p.remoteDisk
		}
		if p.state == SyncSource {
			ps.ResyncTotal = p.resyncTotal
			ps.ResyncRemaining = int64(p.bm.ones()) * BlockSize
		}
		p.mu.Unlock()
		st.Peers = append(st.Peers, ps)
	}
	return st
}
