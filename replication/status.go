package replication

import (
	"fmt"
	"time"

	"github.com/geobooth/geobooth/api"
)

// Status is a volume's state for ticketctl repl, the API and the
// dashboard; PeerStatus its state with one peer. Both are the API's.
type (
	Status     = api.Volume
	PeerStatus = api.VolumePeer
)

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
