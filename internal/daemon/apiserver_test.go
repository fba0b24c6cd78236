package daemon

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/geobooth/geobooth/kit/testenv"
)

func startAPI(t *testing.T, lim apiLimits) (string, *http.Server) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	srv := newAPIServer(h, lim, prometheus.NewRegistry())
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), srv
}

// get makes one request on a new connection and keeps it open (idle,
// keep-alive) unless close is set.
func get(addr string) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		c.Close()
		return nil, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		c.Close()
		return nil, fmt.Errorf("status %d", resp.StatusCode)
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

// closedByServer reports whether the server closed c (a read sees EOF or
// a reset within wait).
func closedByServer(c net.Conn, wait time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(wait))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

// Issue 17, F5: idle keep-alive connections were never closed nor capped;
// 20,000 of them exhausted the daemon's descriptors. Now a flood of
// silent and idle connections is capped, the API keeps answering, and
// every one is closed after the idle timeout.
func TestIdleConnectionFloodIsCappedAndTheAPIKeepsAnswering(t *testing.T) {
	lim := apiLimits{MaxConns: 64, ReadHeader: time.Second, Read: 2 * time.Second, Write: 2 * time.Second, Idle: time.Second}
	addr, _ := startAPI(t, lim)
	var flood []net.Conn
	defer func() {
		for _, c := range flood {
			c.Close()
		}
	}()
	for i := 0; i < 1000; i++ {
		var c net.Conn
		var err error
		if i%2 == 0 {
			c, err = net.DialTimeout("tcp", addr, 5*time.Second) // silent
		} else {
			c, err = get(addr) // idle after one request
		}
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		flood = append(flood, c)
	}
	// The API answers at once, beside the flood.
	for i := 0; i < 10; i++ {
		c, err := get(addr)
		if err != nil {
			t.Fatalf("the API did not answer beside 1,000 idle connections: %v", err)
		}
		c.Close()
	}
	// Every flood connection is closed by the server, within the idle
	// (or header) timeout and some slack.
	deadline := time.Now().Add(10 * time.Second)
	for i, c := range flood {
		if !closedByServer(c, time.Until(deadline)) {
			t.Fatalf("flood connection %d still open after the idle timeout", i)
		}
	}
}

// A request in progress is never evicted: with every slot busy, a new
// connection is refused instead, and counted.
func TestBusyConnectionsAreNotEvicted(t *testing.T) {
	release := make(chan struct{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	entered := make(chan struct{}, 4)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
		io.WriteString(w, "done\n")
	})
	srv := newAPIServer(h, apiLimits{MaxConns: 4, ReadHeader: 5 * time.Second, Read: 10 * time.Second, Write: 10 * time.Second, Idle: 5 * time.Second}, reg)
	go srv.Serve(ln)
	defer srv.Close()
	addr := ln.Addr().String()
	var busy []net.Conn
	for i := 0; i < 4; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
		busy = append(busy, c)
	}
	refused := func() float64 {
		n := 0.0
		mfs, _ := reg.Gather()
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetValue() == "refused" {
						n += m.GetCounter().GetValue()
					}
				}
			}
		}
		return n
	}
	// Once the four requests are in their handler, one more connection
	// is refused.
	for i := 0; i < 4; i++ {
		select {
		case <-entered:
		case <-time.After(10 * time.Second):
			t.Fatalf("only %d requests reached the handler", i)
		}
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return err
		}
		defer c.Close()
		if !closedByServer(c, 2*time.Second) {
			return errors.New("a fifth connection was kept beside four busy ones")
		}
		if refused() == 0 {
			return errors.New("no refusal counted yet")
		}
		return nil
	})
	close(release)
	for i, c := range busy {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("busy request %d was cut: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		if !strings.Contains(string(b), "done") {
			t.Fatalf("busy request %d: %q", i, b)
		}
	}
}
