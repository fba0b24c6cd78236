package replication

import (
	"bytes"
	"context"
	"errors"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/geobooth/geobooth/kit/tlsfiles"
)

// memberTLS makes a CA (or uses ca) and the TLS source of member name,
// whose certificate carries certName.
func memberTLS(t *testing.T, ca *tlsfiles.PEM, certName string) *tlsfiles.Source {
	t.Helper()
	dir := t.TempDir()
	if ca.Cert == nil {
		c, err := tlsfiles.NewCA("test", time.Now(), time.Hour)
		must(t, err)
		*ca = c
	}
	must(t, ca.Write(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem")))
	m, err := tlsfiles.NewMember(*ca, certName, nil, time.Now(), time.Hour)
	must(t, err)
	must(t, m.Write(filepath.Join(dir, "m.pem"), filepath.Join(dir, "m-key.pem")))
	s, err := tlsfiles.Open(tlsfiles.Files{CA: filepath.Join(dir, "ca.pem"), Cert: filepath.Join(dir, "m.pem"), Key: filepath.Join(dir, "m-key.pem")})
	must(t, err)
	return s
}

// recorder forwards TCP connections to target and keeps every byte seen.
type recorder struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	seen   bytes.Buffer
	// flipAt, when positive, flips one bit of the byte at that offset of
	// the client-to-server stream (a man in the middle changing a frame).
	flipAt  int
	flipped bool
	sent    int
}

func newRecorder(t *testing.T, target string) *recorder {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	r := &recorder{ln: ln, target: target}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			go r.copy(u, c, true)
			go r.copy(c, u, false)
		}
	}()
	return r
}

func (r *recorder) copy(to, from net.Conn, upstream bool) {
	defer to.Close()
	buf := make([]byte, 64<<10)
	for {
		n, err := from.Read(buf)
		if n > 0 {
			r.mu.Lock()
			r.seen.Write(buf[:n])
			if upstream && r.flipAt > 0 && !r.flipped && r.sent+n > r.flipAt {
				buf[r.flipAt-r.sent] ^= 0x01
				r.flipped = true
			}
			if upstream {
				r.sent += n
			}
			r.mu.Unlock()
			if _, werr := to.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (r *recorder) contains(b []byte) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return bytes.Contains(r.seen.Bytes(), b)
}

// tlsPairThroughRecorder is a pair of members of one CA, east reaching
// west through a recorder.
func tlsPairThroughRecorder(t *testing.T) (*pair, *recorder) {
	var ca tlsfiles.PEM
	p := newPair(t, 4<<20, nil)
	p.tls["east"], p.tls["west"] = memberTLS(t, &ca, "east"), memberTLS(t, &ca, "west")
	rec := newRecorder(t, p.addr["west"])
	p.via["west"] = rec.ln.Addr().String()
	return p, rec
}

// Issue 17, F2: the replication link was cleartext after an HMAC login.
// With TLS between members of the cluster's CA, the data crosses as
// ciphertext, and the replicas stay equal.
func TestReplicationOverMutualTLS(t *testing.T) {
	p, rec := tlsPairThroughRecorder(t)
	east := p.open("east")
	p.open("west")
	p.waitState("east", InSync)
	must(t, east.Promote(context.Background(), false))
	secret := bytes.Repeat([]byte("plaintext block data "), BlockSize/21+1)[:BlockSize]
	must(t, east.WriteAt(secret, 64*BlockSize, true))
	drained(t, east)
	p.assertEqual()
	if rec.contains(secret[:64]) || rec.contains([]byte("GBRP")) || rec.contains([]byte("data")) {
		t.Fatal("replication data, frames or the hello crossed in clear")
	}
	if !rec.contains([]byte{0x16, 0x03}) {
		t.Fatal("the recorder saw no TLS handshake: is it on the path?")
	}
}

// A member whose certificate is of another CA, or names another member
// than the one it says it is, is refused, and the peers never connect.
func TestReplicationRefusesForeignOrMisnamedCertificates(t *testing.T) {
	for _, c := range []struct {
		name     string
		eastCert func(ca *tlsfiles.PEM) *tlsfiles.Source
	}{
		{"another CA", func(*tlsfiles.PEM) *tlsfiles.Source { var other tlsfiles.PEM; return memberTLS(t, &other, "east") }},
		{"another member's name", func(ca *tlsfiles.PEM) *tlsfiles.Source { return memberTLS(t, ca, "north") }},
	} {
		t.Run(c.name, func(t *testing.T) {
			var ca tlsfiles.PEM
			p := newPair(t, 1<<20, nil)
			p.tls["west"] = memberTLS(t, &ca, "west")
			p.tls["east"] = c.eastCert(&ca)
			east := p.open("east")
			west := p.open("west")
			eventually(t, 10*time.Second, func() error {
				if testutil.ToFloat64(west.met.authFailures) == 0 {
					return errors.New("west refused nothing yet")
				}
				if east.Status().Peers[0].LastError == "" {
					return errors.New("east shows no reason yet")
				}
				return nil
			})
			if st := east.Status().Peers[0]; st.Connected || st.State == InSync {
				t.Fatalf("east connected to west: %+v", st)
			}
		})
	}
}

// Issue 17, F2: a man in the middle inserted a frame with a recomputed
// CRC and both sides reported InSync with different data. Under TLS a
// changed byte breaks the record's authentication: the link drops,
// reconnects, and the replicas end equal.
func TestChangedBytesOnTheTLSLinkAreDetected(t *testing.T) {
	p, rec := tlsPairThroughRecorder(t)
	east := p.open("east")
	west := p.open("west")
	p.waitState("east", InSync)
	must(t, east.Promote(context.Background(), false))
	// Flip a bit well inside the data that follows.
	rec.mu.Lock()
	rec.flipAt = rec.sent + 2*BlockSize
	rec.mu.Unlock()
	must(t, east.WriteAt(randomData(9, 1<<20), 0, true))
	eventually(t, 10*time.Second, func() error {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		if !rec.flipped {
			return errors.New("no byte flipped yet")
		}
		return nil
	})
	drained(t, east)
	p.waitState("west", InSync)
	p.assertEqual()
	if st := west.Status(); st.Disk != UpToDate {
		t.Fatalf("west after the tampering: %s", st.Disk)
	}
}
