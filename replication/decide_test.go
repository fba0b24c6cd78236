package replication

import "testing"

func TestHandshakeDecisions(t *testing.T) {
	const g1, g2, g3 = 0x11, 0x22, 0x33
	sec := func(cur, bm uint64, dirty uint64, hist ...uint64) stateMsg {
		return stateMsg{role: Secondary, disk: UpToDate, current: cur, bitmap: bm, history: hist, dirty: dirty}
	}
	pri := func(s stateMsg) stateMsg { s.role = Primary; return s }
	crashed := func(s stateMsg) stateMsg { s.crashed = true; return s }
	discard := func(s stateMsg) stateMsg { s.discard = true; return s }
	blank := func(s stateMsg) stateMsg { s.blank = true; return s }
	cases := []struct {
		name   string
		a, b   stateMsg
		policy string
		want   action
		full   bool
	}{
		{"both new", sec(0, 0, 0), sec(0, 0, 0), SplitBrainDisconnect, actNone, false},
		{"this side new", sec(0, 0, 0), sec(g1, 0, 0), SplitBrainDisconnect, actTarget, true},
		{"peer new", sec(g1, 0, 0), sec(0, 0, 0), SplitBrainDisconnect, actSource, true},
		{"same generation, clean", sec(g1, 0, 0), sec(g1, 0, 0), SplitBrainDisconnect, actNone, false},
		{"same generation, primary pulled ahead", pri(sec(g1, 0, 40)), sec(g1, 0, 0), SplitBrainDisconnect, actSource, false},
		{"same generation, crashed primary back", crashed(sec(g1, 0, 900)), sec(g1, 0, 0), SplitBrainDisconnect, actSource, false},
		{"same generation, crashed primary, peer promoted", crashed(sec(g1, 0, 900)), pri(sec(g1, 0, 0)), SplitBrainDisconnect, actTarget, false},
		{"peer missed my writes", sec(g2, g1, 7, g1), sec(g1, 0, 0), SplitBrainDisconnect, actSource, false},
		{"I missed the peer's writes", sec(g1, 0, 0), sec(g2, g1, 7, g1), SplitBrainDisconnect, actTarget, false},
		{"both wrote since parting", sec(g2, g1, 3, g1), sec(g3, g1, 5, g1), SplitBrainDisconnect, actSplitBrain, false},
		{"split brain, least changes loses", sec(g2, g1, 3, g1), sec(g3, g1, 5, g1), SplitBrainDiscardLeastChanges, actTarget, false},
		{"split brain, secondary loses", sec(g2, g1, 3, g1), pri(sec(g3, g1, 1, g1)), SplitBrainDiscardSecondary, actTarget, false},
		{"split brain, discard-my-data here", discard(sec(g2, g1, 3, g1)), sec(g3, g1, 5, g1), SplitBrainDisconnect, actTarget, false},
		{"split brain, discard-my-data at the peer beats the policy", sec(g2, g1, 3, g1), discard(sec(g3, g1, 5, g1)), SplitBrainDiscardLeastChanges, actSource, false},
		{"split brain, discard-my-data at both: the policy", discard(sec(g2, g1, 3, g1)), discard(sec(g3, g1, 5, g1)), SplitBrainDisconnect, actSplitBrain, false},
		{"discard-my-data without a split brain changes nothing", discard(sec(g1, 0, 0)), sec(g2, g1, 7, g1), SplitBrainDisconnect, actTarget, false},
		{"peer far behind (history only)", sec(g3, 0, 0, g2, g1), sec(g1, 0, 0), SplitBrainDisconnect, actSource, true},
		{"diverged without a bitmap", sec(g3, 0, 0, g2, g1), sec(0x44, 0, 0, 0x55, g1), SplitBrainDisconnect, actSplitBrain, false},
		{"unrelated", sec(g1, 0, 0), sec(g2, 0, 0), SplitBrainDisconnect, actRefuse, false},
		{"blank here, unrelated data at the peer", blank(sec(g1, 0, 0)), pri(sec(g2, 0, 0)), SplitBrainDisconnect, actTarget, true},
		{"blank at the peer, unrelated data here", sec(g2, 0, 0), blank(sec(g1, 0, 0)), SplitBrainDisconnect, actSource, true},
		{"both blank: equal", blank(sec(g1, 0, 0)), blank(sec(g1, 0, 0)), SplitBrainDisconnect, actNone, false},
	}
	for _, c := range cases {
		d := decide(c.a, c.b, c.policy, "east", "west")
		if d.action != c.want || d.full != c.full {
			t.Errorf("%s: %+v, want %s full=%v", c.name, d, c.want, c.full)
		}
		// Both sides must agree: the peer's decision is the mirror.
		if back := decide(c.b, c.a, c.policy, "west", "east").mirror(); back.action != d.action || back.full != d.full {
			t.Errorf("%s: the peer decides %+v, not the mirror of %+v", c.name, back, d)
		}
	}
}
