// Package sockopt sets socket options the standard library leaves out.
package sockopt

import (
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// ReadBuffer asks for a receive buffer of n bytes on c and returns the size
// the kernel granted. It tries SO_RCVBUFFORCE first, which passes
// net.core.rmem_max for a process with CAP_NET_ADMIN (geoboothd as root),
// and then SO_RCVBUF, which the kernel caps at rmem_max (212992 bytes on a
// default Debian: 200 or so datagrams, fewer than one burst of queries or
// renewals).
func ReadBuffer(c syscall.Conn, n int) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, fmt.Errorf("raw socket: %w", err)
	}
	var got int
	var serr error
	err = rc.Control(func(fd uintptr) {
		if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, n) != nil {
			if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, n); serr != nil {
				return
			}
		}
		// The kernel reports twice what it accounts (bookkeeping).
		got, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF)
		got /= 2
	})
	if err != nil {
		return 0, fmt.Errorf("socket: %w", err)
	}
	if serr != nil {
		return 0, fmt.Errorf("receive buffer of %d bytes: %w", n, serr)
	}
	return got, nil
}
