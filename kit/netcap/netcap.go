// Package netcap caps the connections a listener keeps open at once: one
// beyond the cap is closed as soon as it is accepted, and counted, so that
// a flood of connections cannot take every file descriptor of the daemon.
package netcap

import (
	"net"
	"sync"
)

// Listener is a net.Listener that keeps at most Max connections open.
type Listener struct {
	net.Listener
	slots   chan struct{}
	refused func()
}

// New caps ln at max open connections; refused (optional) is called for
// each connection closed at accept.
func New(ln net.Listener, max int, refused func()) *Listener {
	return &Listener{Listener: ln, slots: make(chan struct{}, max), refused: refused}
}

// Accept returns the next connection within the cap.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		select {
		case l.slots <- struct{}{}:
			return &conn{Conn: c, release: func() { <-l.slots }}, nil
		default:
			// Counted before the close, so whoever sees the close sees
			// the count.
			if l.refused != nil {
				l.refused()
			}
			c.Close()
		}
	}
}

// Open is how many connections are open.
func (l *Listener) Open() int { return len(l.slots) }

type conn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
