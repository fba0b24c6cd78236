package tlsfiles

import (
	"crypto/tls"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// cluster writes a CA and the certificates of names into a folder.
func cluster(t *testing.T, names ...string) (string, PEM) {
	t.Helper()
	dir := t.TempDir()
	ca, err := NewCA("test", time.Now(), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.Write(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem")); err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		m, err := NewMember(ca, n, []string{"127.0.0.1"}, time.Now(), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Write(filepath.Join(dir, n+".pem"), filepath.Join(dir, n+"-key.pem")); err != nil {
			t.Fatal(err)
		}
	}
	return dir, ca
}

func open(t *testing.T, dir, ca, name string) *Source {
	t.Helper()
	s, err := Open(Files{CA: filepath.Join(dir, ca), Cert: filepath.Join(dir, name+".pem"), Key: filepath.Join(dir, name+"-key.pem")})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// handshake runs a TLS handshake between a server with srv and a client
// with cli; it returns the name the server saw and the client's error.
func handshake(t *testing.T, srv, cli *tls.Config) (string, error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	b, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	a, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	a.SetDeadline(time.Now().Add(10 * time.Second))
	b.SetDeadline(time.Now().Add(10 * time.Second))
	got := make(chan string, 1)
	go func() {
		s := tls.Server(a, srv)
		if err := s.Handshake(); err != nil {
			got <- ""
			a.Close()
			return
		}
		got <- PeerName(s.ConnectionState())
		io.Copy(io.Discard, s)
	}()
	c := tls.Client(b, cli)
	err = c.Handshake()
	if err == nil {
		// TLS 1.3: the server's verdict on the client's certificate
		// comes after the client's handshake; a read sees it.
		c.Write([]byte("x"))
		c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		_, rerr := c.Read(make([]byte, 1))
		if ne, ok := rerr.(net.Error); rerr != nil && !(ok && ne.Timeout()) {
			err = rerr
		}
	}
	return <-got, err
}

func TestMembersOfTheCAConnectByName(t *testing.T) {
	dir, _ := cluster(t, "east", "west")
	east, west := open(t, dir, "ca.pem", "east"), open(t, dir, "ca.pem", "west")
	name, err := handshake(t, west.Server(tls.RequireAndVerifyClientCert), east.Client("west"))
	if err != nil || name != "east" {
		t.Fatalf("east to west: peer %q, %v", name, err)
	}
	// East expecting another member refuses west's certificate.
	if _, err := handshake(t, west.Server(tls.RequireAndVerifyClientCert), east.Client("arbitrator")); err == nil ||
		!strings.Contains(err.Error(), "arbitrator") {
		t.Fatalf("west accepted as arbitrator: %v", err)
	}
}

func TestAMemberOfAnotherCAIsRefused(t *testing.T) {
	dir, _ := cluster(t, "west")
	other, _ := cluster(t, "east")
	west := open(t, dir, "ca.pem", "west")
	mallory := open(t, other, "ca.pem", "east") // "east", of another CA
	if name, err := handshake(t, west.Server(tls.RequireAndVerifyClientCert), mallory.Client("west")); err == nil || name != "" {
		t.Fatalf("a certificate of another CA was taken: %q, %v", name, err)
	}
	// Without a certificate at all.
	if name, err := handshake(t, west.Server(tls.RequireAndVerifyClientCert), &tls.Config{MinVersion: tls.VersionTLS13,
		InsecureSkipVerify: true}); err == nil || name != "" {
		t.Fatalf("a client without a certificate was taken: %q, %v", name, err)
	}
}

func TestKeyReadableByOthersIsRefused(t *testing.T) {
	dir, _ := cluster(t, "east")
	if err := os.Chmod(filepath.Join(dir, "east-key.pem"), 0o640); err != nil {
		t.Fatal(err)
	}
	_, err := Open(Files{CA: filepath.Join(dir, "ca.pem"), Cert: filepath.Join(dir, "east.pem"), Key: filepath.Join(dir, "east-key.pem")})
	if err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("a key readable by the group: %v", err)
	}
	// A certificate of another CA than ca_file is refused at load.
	other, _ := cluster(t, "west")
	_, err = Open(Files{CA: filepath.Join(dir, "ca.pem"), Cert: filepath.Join(other, "west.pem"), Key: filepath.Join(other, "west-key.pem")})
	if err == nil || !strings.Contains(err.Error(), "not a valid certificate of the CA") {
		t.Fatalf("a certificate of another CA: %v", err)
	}
}

// A certificate replaced on disk is served from the next handshake, with
// no restart; a broken replacement keeps the previous one.
func TestCertificatesRotateWithoutARestart(t *testing.T) {
	dir, ca := cluster(t, "west", "east")
	west := open(t, dir, "ca.pem", "west")
	now := time.Now()
	west.now = func() time.Time { return now }
	before := west.NotAfter()
	m, err := NewMember(ca, "west", nil, time.Now(), 48*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(dir, "west.pem"))
	os.Remove(filepath.Join(dir, "west-key.pem"))
	if err := m.Write(filepath.Join(dir, "west.pem"), filepath.Join(dir, "west-key.pem")); err != nil {
		t.Fatal(err)
	}
	future := time.Now().Add(time.Second)
	os.Chtimes(filepath.Join(dir, "west.pem"), future, future)
	now = now.Add(reloadEvery)
	if after := west.NotAfter(); !after.After(before) {
		t.Fatalf("the new certificate (expiring %v) was not loaded: %v", m, after)
	}
	east := open(t, dir, "ca.pem", "east")
	if _, err := handshake(t, west.Server(tls.RequireAndVerifyClientCert), east.Client("west")); err != nil {
		t.Fatalf("after the rotation: %v", err)
	}
	// A broken file keeps the loaded certificate, and Reload says why.
	os.WriteFile(filepath.Join(dir, "west.pem"), []byte("garbage"), 0o644)
	if err := west.Reload(); err == nil {
		t.Fatal("a broken certificate reloaded")
	}
	if _, err := handshake(t, west.Server(tls.RequireAndVerifyClientCert), east.Client("west")); err != nil {
		t.Fatalf("after a broken rotation: %v", err)
	}
}
