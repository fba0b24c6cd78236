package tlsfiles

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"time"
)

// PEM is a certificate and its key, PEM-encoded.
type PEM struct {
	Cert, Key []byte
}

// newKey makes a certificate's key (ECDSA P-256) and a random serial.
func newKey() (*ecdsa.PrivateKey, *big.Int, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	sn, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return key, sn, err
}

func encode(der []byte, key *ecdsa.PrivateKey) (PEM, error) {
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return PEM{}, err
	}
	return PEM{Cert: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		Key: pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})}, nil
}

// NewCA makes a cluster CA valid from now for validity.
func NewCA(cluster string, now time.Time, validity time.Duration) (PEM, error) {
	key, sn, err := newKey()
	if err != nil {
		return PEM{}, err
	}
	tmpl := &x509.Certificate{SerialNumber: sn, Subject: pkix.Name{CommonName: "geobooth CA " + cluster},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(validity), IsCA: true, BasicConstraintsValid: true,
		MaxPathLenZero: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return PEM{}, err
	}
	return encode(der, key)
}

// NewMember makes the certificate of member name, signed by ca: its first
// DNS name is the member name, then hosts (DNS names or IP addresses,
// those clients such as curl and ticketctl connect by); it serves and
// connects (server and client authentication).
func NewMember(ca PEM, name string, hosts []string, now time.Time, validity time.Duration) (PEM, error) {
	if name == "" {
		return PEM{}, errors.New("a member certificate needs the member name")
	}
	cb, _ := pem.Decode(ca.Cert)
	kb, _ := pem.Decode(ca.Key)
	if cb == nil || kb == nil {
		return PEM{}, errors.New("the CA certificate or key is not PEM")
	}
	caCert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return PEM{}, fmt.Errorf("CA certificate: %w", err)
	}
	caKey, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		return PEM{}, fmt.Errorf("CA key: %w", err)
	}
	key, sn, err := newKey()
	if err != nil {
		return PEM{}, err
	}
	tmpl := &x509.Certificate{SerialNumber: sn, Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(validity), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != name {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return PEM{}, err
	}
	return encode(der, key)
}

// Write writes the certificate to certPath (0644) and the key to keyPath
// (0600), refusing to overwrite either.
func (p PEM) Write(certPath, keyPath string) error {
	for _, f := range []struct {
		path string
		data []byte
		mode os.FileMode
	}{{keyPath, p.Key, 0o600}, {certPath, p.Cert, 0o644}} {
		fh, err := os.OpenFile(f.path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, f.mode)
		if err != nil {
			return err
		}
		if _, err := fh.Write(f.data); err != nil {
			fh.Close()
			return err
		}
		if err := fh.Close(); err != nil {
			return err
		}
	}
	return nil
}

// ReadPEM reads a certificate and key pair written by Write.
func ReadPEM(certPath, keyPath string) (PEM, error) {
	c, err := os.ReadFile(certPath)
	if err != nil {
		return PEM{}, err
	}
	k, err := os.ReadFile(keyPath)
	if err != nil {
		return PEM{}, err
	}
	return PEM{Cert: c, Key: k}, nil
}
