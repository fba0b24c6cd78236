package booth

import (
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
