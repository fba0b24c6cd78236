package netcap

import (
	"errors"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/geobooth/geobooth/kit/testenv"
)

func TestConnectionsBeyondTheCapAreClosedAndCounted(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var refused atomic.Int64
	ln := New(inner, 2, func() { refused.Add(1) })
	defer ln.Close()
	accepted := make(chan net.Conn, 10)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	var clients []net.Conn
	for i := 0; i < 3; i++ {
		c, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		clients = append(clients, c)
	}
	first, second := <-accepted, <-accepted
	// The third is closed by the server.
	clients[2].SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, clients[2]); err != nil {
		t.Fatalf("the connection beyond the cap was not closed: %v", err)
	}
	if refused.Load() != 1 || ln.Open() != 2 {
		t.Fatalf("refused %d, open %d", refused.Load(), ln.Open())
	}
	// Closing one (twice) frees one slot.
	first.Close()
	first.Close()
	c, err := net.Dial("tcp", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case <-accepted:
	case <-time.After(5 * time.Second):
		t.Fatal("a freed slot was not given to the next connection")
	}
	testenv.Eventually(t, 5*time.Second, func() error {
		if ln.Open() != 2 {
			return errors.New("slots not accounted")
		}
		return nil
	})
	second.Close()
}
