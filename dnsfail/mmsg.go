package dnsfail

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"unsafe"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"
)

// udpBatch is one socket's batched reads and writes: recvmmsg and sendmmsg
// called on the socket itself, with every buffer, iovec and header set up
// once and the clients' addresses kept as the kernel wrote them, so that
// an answered query costs no allocation (golang.org/x/net's ReadBatch
// builds a net.UDPAddr for every datagram).
type udpBatch struct {
	rc syscall.RawConn
	// in: the requests; name[i] is where request i came from.
	in    [batch]unix.Mmsghdr
	inIov [batch]unix.Iovec
	req   [batch][]byte
	name  [batch]unix.RawSockaddrInet6
	// out: the replies, each to the name of its request.
	out    [batch]unix.Mmsghdr
	outIov [batch]unix.Iovec
	resp   [batch][]byte
	// The calls given to rc, made once (a closure per call would be an
	// allocation), and what they pass back: n messages, or errno; for
	// sending, the replies from first up to k.
	recv, send func(fd uintptr) bool
	n          int
	errno      syscall.Errno
	first, k   int
}

func newUDPBatch(pc net.PacketConn) (*udpBatch, error) {
	sc, ok := pc.(syscall.Conn)
	if !ok {
		return nil, fmt.Errorf("%T has no file descriptor", pc)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("raw socket: %w", err)
	}
	b := &udpBatch{rc: rc}
	b.recv, b.send = b.recvmmsg, b.sendmmsg
	for i := range b.in {
		b.req[i] = make([]byte, dns.MaxMsgSize)
		b.resp[i] = make([]byte, 0, dns.MaxMsgSize)
		b.inIov[i].Base = &b.req[i][0]
		b.inIov[i].SetLen(len(b.req[i]))
		b.in[i].Hdr.Iov = &b.inIov[i]
		b.in[i].Hdr.SetIovlen(1)
		b.in[i].Hdr.Name = (*byte)(unsafe.Pointer(&b.name[i]))
		b.out[i].Hdr.Iov = &b.outIov[i]
		b.out[i].Hdr.SetIovlen(1)
	}
	return b, nil
}

// read waits for datagrams and returns how many arrived (at most batch).
func (b *udpBatch) read() (int, error) {
	for i := range b.in {
		b.in[i].Hdr.Namelen = unix.SizeofSockaddrInet6
	}
	if err := b.rc.Read(b.recv); err != nil {
		return 0, err
	}
	if b.errno != 0 {
		return 0, fmt.Errorf("recvmmsg: %w", b.errno)
	}
	return b.n, nil
}

// recvmmsg and sendmmsg are raw system calls: the socket is non-blocking
// (the runtime's poller waits for it), so they return within microseconds
// and the scheduler need not hear of them. Through the runtime's syscall
// entry, a batch of replies that took longer than sysmon's 20 µs tick had
// the processor taken away and handed back: twice the context switches in
// bench/dns.
func (b *udpBatch) recvmmsg(fd uintptr) bool {
	r, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&b.in[0])), batch, 0, 0, 0)
	if e == unix.EAGAIN {
		return false
	}
	b.n, b.errno = int(r), e
	return true
}

func (b *udpBatch) sendmmsg(fd uintptr) bool {
	r, _, e := unix.RawSyscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&b.out[b.first])), uintptr(b.k-b.first), 0, 0, 0)
	if e == unix.EAGAIN {
		return false
	}
	b.n, b.errno = int(r), e
	return true
}

// request returns datagram i of the last read.
func (b *udpBatch) request(i int) []byte { return b.req[i][:b.in[i].Len] }

// from returns the address datagram i came from (invalid for an address
// family other than IPv4 and IPv6).
func (b *udpBatch) from(i int) netip.AddrPort {
	sa := &b.name[i]
	port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:])
	switch sa.Family {
	case unix.AF_INET:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), port)
	case unix.AF_INET6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), port)
	}
	return netip.AddrPort{}
}

// reply queues resp as reply number k, to the sender of datagram i.
func (b *udpBatch) reply(k, i int, resp []byte) {
	b.resp[k] = resp
	b.outIov[k].Base = &resp[0]
	b.outIov[k].SetLen(len(resp))
	b.out[k].Hdr.Name = b.in[i].Hdr.Name
	b.out[k].Hdr.Namelen = b.in[i].Hdr.Namelen
}

// buffer returns the buffer reply number k may be built in.
func (b *udpBatch) buffer(k int) []byte { return b.resp[k][:0] }

// write sends replies 0..k-1. A reply the kernel refuses (an unreachable
// client) is skipped and counted; the others still go.
func (b *udpBatch) write(k int) (skipped int, err error) {
	b.k = k
	for b.first = 0; b.first < k; {
		if err := b.rc.Write(b.send); err != nil {
			return skipped, err
		}
		if b.errno != 0 || b.n <= 0 {
			b.n = 1 // the first of the rest failed: skip it
			skipped++
		}
		b.first += b.n
	}
	return skipped, nil
}
