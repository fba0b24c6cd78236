package ticket

import (
	"fmt"
	"time"
)

// DefaultMaxTimeSkew is Booth's max_time_skew: a datagram whose timestamp
// is further than this from the receiver's wall clock is refused.
const DefaultMaxTimeSkew = 600 * time.Second

// replayWindow is how many sequence numbers below the highest seen are
// still accepted (once each), for datagrams that arrive out of order.
const replayWindow = 64

// ReplayFilter refuses replayed and stale datagrams. Per sender it keeps
// the boot epoch, the highest sequence number and a bitmap of the
// replayWindow numbers below it. It is not safe for concurrent use.
//
// A receiver that restarts forgets what it saw, so a datagram captured in
// the last MaxSkew could be replayed to it once; the protocol tolerates
// that (a stale request is answered from current state, and answers are
// matched to rounds the receiver's new boot never issued).
type ReplayFilter struct {
	MaxSkew time.Duration
	senders map[int]*replayState
}

type replayState struct {
	epoch, top uint64
	seen       uint64 // bit i: top-i was seen
}

// Check accepts e at the receiver's wall clock now (Unix ns), or says why
// not. An accepted datagram is remembered.
func (f *ReplayFilter) Check(e Envelope, now int64) error {
	skew := f.MaxSkew
	if skew <= 0 {
		skew = DefaultMaxTimeSkew
	}
	if d := time.Duration(now - e.Time); d > skew || d < -skew {
		return fmt.Errorf("%w: sent %v from this member's clock (max_time_skew %v)", ErrStale, d, skew)
	}
	if f.senders == nil {
		f.senders = map[int]*replayState{}
	}
	st := f.senders[e.Msg.From]
	switch {
	case st == nil || e.Epoch > st.epoch:
		f.senders[e.Msg.From] = &replayState{epoch: e.Epoch, top: e.Seq, seen: 1}
		return nil
	case e.Epoch < st.epoch:
		return fmt.Errorf("%w: from an earlier boot of member %d", ErrReplay, e.Msg.From)
	case e.Seq > st.top:
		shift := e.Seq - st.top
		if shift >= replayWindow {
			st.seen = 0
		} else {
			st.seen <<= shift
		}
		st.seen |= 1
		st.top = e.Seq
		return nil
	}
	back := st.top - e.Seq
	if back >= replayWindow {
		return fmt.Errorf("%w: sequence %d too far behind %d", ErrReplay, e.Seq, st.top)
	}
	if st.seen&(1<<back) != 0 {
		return fmt.Errorf("%w: sequence %d seen before", ErrReplay, e.Seq)
	}
	st.seen |= 1 << back
	return nil
}
