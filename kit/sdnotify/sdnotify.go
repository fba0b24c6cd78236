// Package sdnotify speaks systemd's notify protocol (sd_notify(3)): one
// datagram of newline-separated assignments to the socket named by
// NOTIFY_SOCKET. Without that variable (not started by systemd, or
// Type=simple) every call does nothing.
package sdnotify

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"time"
)

// Notifier sends states to the service manager.
type Notifier struct {
	addr *net.UnixAddr // nil: no service manager listens
}

// FromEnv returns the notifier NOTIFY_SOCKET names ("@name" is an
// abstract socket).
func FromEnv() *Notifier {
	p := os.Getenv("NOTIFY_SOCKET")
	if p == "" {
		return &Notifier{}
	}
	if p[0] == '@' {
		p = "\x00" + p[1:]
	}
	return &Notifier{addr: &net.UnixAddr{Name: p, Net: "unixgram"}}
}

// Enabled says whether a service manager listens.
func (n *Notifier) Enabled() bool { return n.addr != nil }

// Send sends the assignments (such as "READY=1", "STATUS=…") in one
// datagram.
func (n *Notifier) Send(states ...string) error {
	if n.addr == nil {
		return nil
	}
	c, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	defer c.Close()
	var b []byte
	for _, s := range states {
		b = append(b, s...)
		b = append(b, '\n')
	}
	if _, err := c.Write(b); err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	return nil
}

// WatchdogInterval is the interval the service manager expects
// WATCHDOG=1 within (WatchdogSec=), or 0 when it watches nothing or
// watches another process (WATCHDOG_PID).
func WatchdogInterval() time.Duration {
	us, err := strconv.ParseInt(os.Getenv("WATCHDOG_USEC"), 10, 64)
	if err != nil || us <= 0 {
		return 0
	}
	if p := os.Getenv("WATCHDOG_PID"); p != "" && p != strconv.Itoa(os.Getpid()) {
		return 0
	}
	return time.Duration(us) * time.Microsecond
}
