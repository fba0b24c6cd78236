package booth

import (
	"context"
	"encoding/binary"
	"strings"
	"testing"
	"time"

	"github.com/geobooth/geobooth/booth/boothconf"
)

// FuzzArbiterReceive feeds any sequence of decodable peer messages to an
// arbitrator: no panic, answers go only to the sender, and a vote is
// never given to two members in one term.
func FuzzArbiterReceive(f *testing.F) {
	for _, m := range []Message{
		askVote(east, 1, ReasonAdmin),
		peerMsg(east, CmdHeartbeat, boothconf.SiteID(east), 1, 30, 0),
		askVote(west, 2, ReasonLost),
		peerMsg(east, CmdRevoke, boothconf.SiteID(east), 1, 0, ReasonAdmin),
		peerMsg(west, CmdMyIndex, boothconf.SiteID(west), 3, 20, 0),
	} {
		f.Add(Encode(m, nil), uint16(1))
	}
	f.Fuzz(func(t *testing.T, stream []byte, step uint16) {
		a := testArbiter(t, "")
		votes := map[uint32]uint32{} // term → the member voted for
		now := time.Duration(0)
		size := HeaderSize + TicketSize
		for len(stream) >= size {
			b := stream[:size]
			stream = stream[size:]
			binary.BigEndian.PutUint32(b[24:], uint32(size))
			m, err := Decode(b, nil)
			if err != nil {
				continue
			}
			now += time.Duration(step) * time.Millisecond
			a.Tick(now)
			out, _ := a.Receive(now, m)
			for _, s := range out {
				if s.To != m.From {
					t.Fatalf("answer to %#x for a message from %#x", s.To, m.From)
				}
				if s.Msg.Cmd == CmdVoteFor {
					term := s.Msg.Ticket.Term
					if v, ok := votes[term]; ok && v != s.Msg.Ticket.Leader {
						t.Fatalf("term %d: voted for %#x and %#x", term, v, s.Msg.Ticket.Leader)
					}
					votes[term] = s.Msg.Ticket.Leader
				}
			}
		}
	})
}

// FuzzClientAnswer sends any bytes as a client request: no panic, and
// the answer is always a message the client can read.
func FuzzClientAnswer(f *testing.F) {
	f.Add(Encode(Message{Header: Header{Cmd: CmdList}, HasTicket: true}, nil))
	f.Add(Encode(Message{Header: Header{Cmd: CmdClientRevoke}, HasTicket: true, Ticket: Ticket{Name: "web"}}, nil))
	f.Add(Encode(Message{Header: Header{Cmd: CmdPeers}}, nil))
	f.Add([]byte("GET / HTTP/1.0\r\n\r\n"))
	s := testServer(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := readRequest(strings.NewReader(string(b)))
		if err != nil {
			return
		}
		reply := s.answer(req)
		if n := binary.BigEndian.Uint32(reply[24:]); int(n) != len(reply) {
			t.Fatalf("length field %d for a reply of %d bytes", n, len(reply))
		}
		switch cmd := Code(binary.BigEndian.Uint32(reply[28:])); cmd {
		case CmdResult:
			if _, err := Decode(reply, nil); err != nil {
				t.Fatalf("result does not decode: %v", err)
			}
		case CmdListReply:
			// A header, then text.
		default:
			t.Fatalf("reply %v", cmd)
		}
	})
}

// FuzzSiteReceive feeds any sequence of decodable peer messages, client
// grants and revokes, handler results and clock steps to a site: no
// panic, messages go only to other members, a vote is never given to two
// members in one term, and the CIB is granted only while the site leads.
func FuzzSiteReceive(f *testing.F) {
	for _, m := range []Message{
		askVote(west, 1, ReasonAdmin),
		peerMsg(west, CmdHeartbeat, boothconf.SiteID(west), 1, 30, 0),
		peerMsg(arb, CmdVoteFor, boothconf.SiteID(east), 0, 0, 0),
		peerMsg(arb, CmdAck, boothconf.SiteID(east), 0, 30, 0),
		peerMsg(west, CmdRevoke, boothconf.SiteID(west), 1, 0, ReasonAdmin),
		peerMsg(arb, CmdReject, boothconf.SiteID(west), 3, 20, 0),
	} {
		f.Add(Encode(m, nil), uint16(700))
	}
	f.Fuzz(func(t *testing.T, stream []byte, step uint16) {
		// The handler is booth.conf's, or a guard's check (Guarded).
		handler := " before-acquire-handler = /bin/true\n"
		if step%4 >= 2 {
			handler = ""
		}
		e, err := NewEngine(testConf(t, timed+handler), east, nil)
		if err != nil {
			t.Fatal(err)
		}
		if handler == "" {
			e.Guarded("web")
		}
		votes := map[uint32]uint32{}
		check := func(out []Send) {
			for _, s := range out {
				if _, ok := e.members[s.To]; !ok || s.To == e.self.ID {
					t.Fatalf("a message to %#x", s.To)
				}
				if s.Msg.Cmd == CmdVoteFor && s.Msg.Request == CmdRequestVote && s.Msg.Ticket.Leader != NoLeader {
					if v, ok := votes[s.Msg.Ticket.Term]; ok && v != s.Msg.Ticket.Leader {
						t.Fatalf("term %d: voted for %#x and %#x", s.Msg.Ticket.Term, v, s.Msg.Ticket.Leader)
					}
					votes[s.Msg.Ticket.Term] = s.Msg.Ticket.Leader
				}
			}
			eff := e.TakeEffects()
			for _, w := range eff.CIB {
				if tk := e.tickets[0]; w.Granted && (tk.leader != e.self.ID || tk.state != StateLeader) {
					t.Fatalf("CIB granted while the site is %v with leader %#x", tk.state, tk.leader)
				}
			}
			for _, n := range eff.RunHandler {
				e.HandlerDone(n, step%2 == 0)
			}
		}
		now := time.Duration(0)
		check(e.Start(now))
		size := HeaderSize + TicketSize
		for len(stream) >= size {
			b := stream[:size]
			stream = stream[size:]
			binary.BigEndian.PutUint32(b[24:], uint32(size))
			m, err := Decode(b, nil)
			if err != nil {
				continue
			}
			now += time.Duration(step) * time.Millisecond
			check(e.Tick(now))
			if m.Cmd == CmdGrant || m.Cmd == CmdClientRevoke {
				e.SiteAnswer(now, m)
				check(e.flush())
				continue
			}
			out, _ := e.Receive(now, m)
			check(out)
		}
	})
}

// FuzzAttrRequest sends any bytes as a geostore request to a site: no
// panic, and the answer is a message the client can read.
func FuzzAttrRequest(f *testing.F) {
	f.Add(EncodeAttr(AttrRequest{Header: Header{Cmd: CmdAttrSet}, Ticket: "web", Name: "a", Value: "b"}, nil))
	f.Add(EncodeAttr(AttrRequest{Header: Header{Cmd: CmdAttrList}, Ticket: "web"}, nil))
	f.Add(EncodeAttr(AttrRequest{Header: Header{Cmd: CmdAttrGet}, Ticket: "nosuch", Name: "a"}, nil))
	s := quietServer(f, testConf(f, ""), east)
	s.UseCIB(&fakeCIB{})
	s.epoch, s.ctx = time.Now(), context.Background()
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := readRequest(strings.NewReader(string(b)))
		if err != nil || len(req) < HeaderSize {
			return
		}
		reply := s.attrRequest(s.ctx, req)
		if n := binary.BigEndian.Uint32(reply[24:]); int(n) != len(reply) {
			t.Fatalf("length field %d for a reply of %d bytes", n, len(reply))
		}
	})
}
