package dnsfail

import (
	"encoding/binary"
	"net"
	"runtime"
	"testing"
	"time"
	"unsafe"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"
)

// TestUDPQueriesAllocateNothing: a cached answer costs no allocation on
// the whole path, socket calls included, and the reply goes back to the
// client that asked, over IPv4 and IPv6.
func TestUDPQueriesAllocateNothing(t *testing.T) {
	for _, host := range []string{"127.0.0.1", "::1"} {
		t.Run(host, func(t *testing.T) {
			if host == "::1" {
				if ln, err := net.ListenPacket("udp6", "[::1]:0"); err != nil {
					t.Skipf("no IPv6 loopback: %v", err)
				} else {
					ln.Close()
				}
			}
			o := &owners{}
			o.set("east", time.Now().Add(time.Hour))
			cfg := testConfig(t, bigZone(), nil, nil)
			cfg.Listen = net.JoinHostPort(host, "0")
			s := startServer(t, cfg, o, "east", nil)
			c, err := net.Dial("udp", s.Addrs()[0])
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			m := new(dns.Msg)
			m.SetQuestion("mail.example.test.", dns.TypeA)
			m.SetEdns0(1232, false)
			req, _ := m.Pack()
			buf := make([]byte, 2048)
			c.SetDeadline(time.Now().Add(30 * time.Second))
			ask := func(id uint16) {
				req[0], req[1] = byte(id>>8), byte(id)
				if _, err := c.Write(req); err != nil {
					t.Fatal(err)
				}
				n, err := c.Read(buf)
				if err != nil {
					t.Fatal(err)
				}
				if n < 12 || buf[0] != req[0] || buf[1] != req[1] || buf[3]&0x0f != dns.RcodeSuccess {
					t.Fatalf("reply %x to query %d", buf[:n], id)
				}
			}
			for i := 0; i < 100; i++ { // fill the cache
				ask(uint16(i))
			}
			const n = 3000
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			for i := 0; i < n; i++ {
				ask(uint16(i))
			}
			runtime.ReadMemStats(&after)
			per := float64(after.Mallocs-before.Mallocs) / n
			t.Logf("%.3f allocations per query (client and server)", per)
			if per > 0.3 {
				t.Fatalf("%.3f allocations per query, want none", per)
			}
		})
	}
}

// TestBatchSkipsARefusedReply: a reply the kernel refuses (here: to port
// 0) is skipped, and the replies after it in the batch still go.
func TestBatchSkipsARefusedReply(t *testing.T) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	b, err := newUDPBatch(pc)
	if err != nil {
		t.Fatal(err)
	}
	var clients []net.PacketConn
	for i := 0; i < 2; i++ {
		c, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		clients = append(clients, c)
	}
	to := []int{clients[0].LocalAddr().(*net.UDPAddr).Port, 0, clients[1].LocalAddr().(*net.UDPAddr).Port}
	for i, port := range to {
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(&b.name[i]))
		*sa = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: [4]byte{127, 0, 0, 1}}
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:], uint16(port))
		b.in[i].Hdr.Namelen = unix.SizeofSockaddrInet4
		b.reply(i, i, []byte{'a' + byte(i)})
	}
	skipped, err := b.write(len(to))
	if err != nil || skipped != 1 {
		t.Fatalf("write: %d skipped, %v; want 1 skipped", skipped, err)
	}
	for i, c := range clients {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 16)
		n, _, err := c.ReadFrom(buf)
		if want := []byte{'a' + byte(2*i)}; err != nil || string(buf[:n]) != string(want) {
			t.Fatalf("client %d got %q, %v; want %q", i, buf[:n], err, want)
		}
	}
}
