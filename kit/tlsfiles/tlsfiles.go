// Package tlsfiles gives a member its TLS configuration from three files —
// the cluster's CA, the member's certificate and its key — re-read when
// they change, so that certificates rotate without a restart. Every link
// between members is TLS 1.3 with certificates of that CA, and a member
// is known by the name its certificate carries (its first DNS name, the
// member name).
package tlsfiles

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// Files are a member's TLS files.
type Files struct {
	CA, Cert, Key string
}

// Set reports whether TLS is configured.
func (f Files) Set() bool { return f.CA != "" || f.Cert != "" || f.Key != "" }

// reloadEvery bounds how often the files' times are looked at.
const reloadEvery = time.Second

// Source serves the current certificate and CA pool.
type Source struct {
	files Files
	now   func() time.Time

	mu      sync.Mutex
	checked time.Time
	stamps  [3]time.Time
	cert    *tls.Certificate
	leaf    *x509.Certificate
	pool    *x509.CertPool
	// lastErr: why the last reload failed (the previous files stay in use).
	lastErr error
}

// Open loads the files; they must be valid (a certificate of the CA, a
// key that matches it, readable by the owner only).
func Open(f Files) (*Source, error) {
	if f.CA == "" || f.Cert == "" || f.Key == "" {
		return nil, errors.New("TLS needs ca_file, cert_file and key_file")
	}
	s := &Source{files: f, now: time.Now}
	if err := s.load(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Source) stampsNow() ([3]time.Time, error) {
	var st [3]time.Time
	for i, p := range []string{s.files.CA, s.files.Cert, s.files.Key} {
		fi, err := os.Stat(p)
		if err != nil {
			return st, err
		}
		st[i] = fi.ModTime()
	}
	return st, nil
}

func (s *Source) load() error {
	stamps, err := s.stampsNow()
	if err != nil {
		return err
	}
	caPEM, err := os.ReadFile(s.files.CA)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return fmt.Errorf("%s: no PEM certificate", s.files.CA)
	}
	if fi, err := os.Stat(s.files.Key); err != nil {
		return err
	} else if fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("%s is readable by others (mode %v): chmod 600 it", s.files.Key, fi.Mode().Perm())
	}
	cert, err := tls.LoadX509KeyPair(s.files.Cert, s.files.Key)
	if err != nil {
		return fmt.Errorf("%s, %s: %w", s.files.Cert, s.files.Key, err)
	}
	leaf := cert.Leaf
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: s.now(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}); err != nil {
		return fmt.Errorf("%s is not a valid certificate of the CA in %s: %w", s.files.Cert, s.files.CA, err)
	}
	s.stamps, s.cert, s.leaf, s.pool = stamps, &cert, leaf, pool
	return nil
}

// current re-reads the files when they changed (at most once per
// reloadEvery); a change that does not load keeps the previous ones.
func (s *Source) current() (*tls.Certificate, *x509.CertPool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if now := s.now(); now.Sub(s.checked) >= reloadEvery {
		s.checked = now
		if st, err := s.stampsNow(); err == nil && st != s.stamps {
			s.lastErr = s.load()
		}
	}
	return s.cert, s.pool
}

// Reload re-reads the files now (SIGHUP), returning why it failed.
func (s *Source) Reload() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastErr = s.load()
	return s.lastErr
}

// NotAfter is when the member's certificate expires.
func (s *Source) NotAfter() time.Time {
	s.current()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.leaf.NotAfter
}

// Name is the member name the certificate carries.
func (s *Source) Name() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Name(s.leaf)
}

// Name is the member a certificate names: its first DNS name.
func Name(c *x509.Certificate) string {
	if c == nil || len(c.DNSNames) == 0 {
		return ""
	}
	return c.DNSNames[0]
}

// Server is the configuration of a listener. With clientAuth
// tls.RequireAndVerifyClientCert only members of the CA connect.
func (s *Source) Server(clientAuth tls.ClientAuthType) *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS13,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			cert, pool := s.current()
			return &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{*cert},
				ClientAuth: clientAuth, ClientCAs: pool}, nil
		}}
}

// Client is the configuration to reach a member known as serverName
// (its certificate must carry that name), presenting this member's
// certificate.
func (s *Source) Client(serverName string) *tls.Config {
	_, pool := s.current()
	return &tls.Config{MinVersion: tls.VersionTLS13, ServerName: serverName, RootCAs: pool,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			c, _ := s.current()
			return c, nil
		}}
}

// PeerName is the member name of a verified TLS peer ("" if it showed no
// certificate).
func PeerName(cs tls.ConnectionState) string {
	if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return ""
	}
	return Name(cs.VerifiedChains[0][0])
}
