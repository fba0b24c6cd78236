package booth

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/geobooth/geobooth/booth/boothconf"
	"github.com/geobooth/geobooth/kit/testenv"
)

// loopback is a Booth cluster of Servers on 127.0.0.1 (east), .2 (west)
// and .3 (the arbitrator), on a free port.
type loopback struct {
	t       *testing.T
	port    int
	addrs   []string
	servers []*Server
}

// newLoopback runs the servers of conf (with %d for the port and %s for
// the three addresses) until the test ends; setup readies each before
// it runs and gives the context it runs under. It returns once every
// member listens (so every site answers an election, and no commit is
// delayed).
func newLoopback(t *testing.T, conf string, setup func(i int, s *Server, ctx context.Context) context.Context) *loopback {
	l := &loopback{t: t, port: testenv.FreePort(t), addrs: []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"}}
	c, err := boothconf.ParseConfig(strings.NewReader(fmt.Sprintf(conf, l.port, l.addrs[0], l.addrs[1], l.addrs[2])), "booth.conf")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	t.Cleanup(cancel)
	for i, a := range l.addrs {
		s := quietServer(t, c, netip.MustParseAddr(a))
		runCtx := setup(i, s, ctx)
		l.servers = append(l.servers, s)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Run(runCtx); err != nil {
				t.Errorf("%s: %v", a, err)
			}
		}()
	}
	for _, a := range l.addrs {
		testenv.Eventually(t, 10*time.Second, func() error {
			c, err := net.Dial("tcp", net.JoinHostPort(a, fmt.Sprint(l.port)))
			if err == nil {
				c.Close()
			}
			return err
		})
	}
	return l
}

// ask sends a client command for web to member i and reads every answer
// (nil when it does not listen).
func (l *loopback) ask(i int, cmd Code) []Message {
	t := l.t
	t.Helper()
	conn, err := net.DialTimeout("tcp", net.JoinHostPort(l.addrs[i], fmt.Sprint(l.port)), time.Second)
	if err != nil {
		return nil
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := conn.Write(Encode(Message{Header: Header{Cmd: cmd}, HasTicket: true, Ticket: Ticket{Name: "web"}}, nil)); err != nil {
		t.Fatal(err)
	}
	var out []Message
	for {
		b, err := readRequest(conn)
		if err != nil {
			return out
		}
		m, err := Decode(b, nil)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
}
