package membership

import (
	"fmt"
	"log"
	"net"
	"sync"

	"github.com/hashicorp/memberlist"
)

// heldTransport is memberlist's UDP/TCP transport with incoming traffic
// held back until open is called. serf.Create starts memberlist, whose
// goroutines begin at once, and only then finishes building the serf
// instance they call back into (serf v0.11.0 sets its key manager after
// memberlist.Create). A packet from a member that still knows this
// address (after a restart) could reach serf in that gap: a data race
// inside serf. New opens the transport once serf.Create has returned;
// until then the kernel and the transport's own queue hold the traffic.
type heldTransport struct {
	*memberlist.NetTransport
	gate chan struct{}
	once sync.Once
}

func newHeldTransport(host string, port int, logger *log.Logger) (*heldTransport, error) {
	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{
		BindAddrs: []string{host}, BindPort: port, Logger: logger,
	})
	if err != nil {
		return nil, fmt.Errorf("serf transport on %s:%d: %w", host, port, err)
	}
	return &heldTransport{NetTransport: nt, gate: make(chan struct{})}, nil
}

// open lets incoming traffic through.
func (t *heldTransport) open() { t.once.Do(func() { close(t.gate) }) }

// PacketCh waits for open: memberlist asks for the channel on every turn
// of its receive loop, so the loop cannot take a packet before then.
func (t *heldTransport) PacketCh() <-chan *memberlist.Packet {
	<-t.gate
	return t.NetTransport.PacketCh()
}

// StreamCh waits for open, as PacketCh.
func (t *heldTransport) StreamCh() <-chan net.Conn {
	<-t.gate
	return t.NetTransport.StreamCh()
}

// Shutdown opens the gate too, so that memberlist's receive loops see
// their own shutdown when serf.Create fails half-way.
func (t *heldTransport) Shutdown() error {
	t.open()
	return t.NetTransport.Shutdown()
}
