package sockopt

import (
	"net"
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestReadBuffer(t *testing.T) {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b, err := os.ReadFile("/proc/sys/net/core/rmem_max")
	if err != nil {
		t.Fatal(err)
	}
	max, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	want := 2 * max
	got, err := ReadBuffer(c, want)
	if err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		// Root passes rmem_max.
		if got != want {
			t.Fatalf("as root: buffer %d, want %d (rmem_max %d)", got, want, max)
		}
	} else if got < max/2 {
		t.Fatalf("buffer %d, want rmem_max (%d)", got, max)
	}
	rc, _ := c.SyscallConn()
	var kernel int
	rc.Control(func(fd uintptr) { kernel, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF) })
	if kernel != 2*got {
		t.Fatalf("reported %d, kernel says %d (twice the granted size)", got, kernel)
	}
}
