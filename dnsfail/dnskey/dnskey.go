// Package dnskey makes DNSSEC signing keys as text files (the DNSKEY
// record, then the private key in BIND's format). It needs only the
// standard library, so that ticketctl can make keys without linking a DNS
// server; dnsfail reads the files.
package dnskey

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strings"
)

// TTL is the TTL of the DNSKEY record in a key file.
const TTL = 3600

const (
	flagsKSK  = 257 // zone key, secure entry point: a combined signing key
	protocol  = 3
	algorithm = 13 // ECDSAP256SHA256
)

// New makes a combined signing key (ECDSA P-256) for zone origin and
// returns the text of its key file.
func New(origin string) (string, error) {
	origin, err := Origin(origin)
	if err != nil {
		return "", err
	}
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", fmt.Errorf("DNSSEC key for %s: %w", origin, err)
	}
	pub, err := priv.PublicKey.ECDH()
	if err != nil {
		return "", fmt.Errorf("DNSSEC key for %s: %w", origin, err)
	}
	point := pub.Bytes()[1:] // X‖Y, without the uncompressed-point prefix
	d, err := priv.Bytes()
	if err != nil {
		return "", fmt.Errorf("DNSSEC key for %s: %w", origin, err)
	}
	return fmt.Sprintf("; geobooth DNSSEC key of %s: combined signing key, ECDSAP256SHA256, key tag %d\n"+
		"%s\t%d\tIN\tDNSKEY\t%d %d %d %s\n"+
		"Private-key-format: v1.3\nAlgorithm: %d (ECDSAP256SHA256)\nPrivateKey: %s\n",
		origin, KeyTag(flagsKSK, protocol, algorithm, point),
		origin, TTL, flagsKSK, protocol, algorithm, base64.StdEncoding.EncodeToString(point),
		algorithm, base64.StdEncoding.EncodeToString(d)), nil
}

// Origin returns a zone name in the form key files and the API use:
// lower case, fully qualified; or an error when it is no domain name
// (an empty label, a label over 63 bytes, a name over 253).
func Origin(name string) (string, error) {
	n := strings.ToLower(strings.TrimSuffix(name, "."))
	if n == "" {
		return "", fmt.Errorf("%q is not a zone name: the root has no failover names", name)
	}
	if len(n) > 253 {
		return "", fmt.Errorf("%q is not a zone name: longer than 253 bytes", name)
	}
	for _, l := range strings.Split(n, ".") {
		if l == "" || len(l) > 63 {
			return "", fmt.Errorf("%q is not a zone name: a label is empty or longer than 63 bytes", name)
		}
	}
	return n + ".", nil
}

// KeyTag is a DNSKEY's key tag (RFC 4034, appendix B).
func KeyTag(flags uint16, proto, alg uint8, pub []byte) uint16 {
	rdata := append([]byte{byte(flags >> 8), byte(flags), proto, alg}, pub...)
	var ac uint32
	for i, b := range rdata {
		if i&1 == 0 {
			ac += uint32(b) << 8
		} else {
			ac += uint32(b)
		}
	}
	ac += ac >> 16 & 0xFFFF
	return uint16(ac & 0xFFFF)
}
