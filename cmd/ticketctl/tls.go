package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/geobooth/geobooth/kit/tlsfiles"
)

// hostList collects -host flags (repeatable, or comma-separated).
type hostList []string

func (h *hostList) String() string { return strings.Join(*h, ",") }
func (h *hostList) Set(v string) error {
	for _, x := range strings.Split(v, ",") {
		if x = strings.TrimSpace(x); x != "" {
			*h = append(*h, x)
		}
	}
	return nil
}

// cmdTLS makes the cluster's CA and the members' certificates, as
// `consul tls ca create` and `consul tls cert create` do: keys are
// written 0600, and nothing is overwritten.
func cmdTLS(_ *client, args []string, w io.Writer) error {
	const use = "usage: tls ca [-days N] [-dir DIR] [-name CLUSTER] | tls cert [-days N] [-dir DIR] [-ca FILE] [-ca-key FILE] [-host H]... MEMBER"
	if len(args) == 0 {
		return fail(2, "%s", use)
	}
	fs := flag.NewFlagSet("tls "+args[0], flag.ContinueOnError)
	dir := fs.String("dir", ".", "folder the files are written to")
	days := fs.Int("days", 0, "validity in days (CA: 3650, member: 825)")
	switch args[0] {
	case "ca":
		cluster := fs.String("name", "geobooth", "the cluster's name, in the CA's subject")
		pos, err := parseFlags(fs, args[1:])
		if err != nil {
			return err
		}
		if len(pos) != 0 {
			return fail(2, "%s", use)
		}
		ca, err := tlsfiles.NewCA(*cluster, time.Now(), validity(*days, 3650))
		if err != nil {
			return fail(1, "make the CA: %v", err)
		}
		return writePEM(w, ca, filepath.Join(*dir, "ca.pem"), filepath.Join(*dir, "ca-key.pem"))
	case "cert":
		caFile := fs.String("ca", "ca.pem", "the CA's certificate")
		caKey := fs.String("ca-key", "ca-key.pem", "the CA's key")
		var hosts hostList
		fs.Var(&hosts, "host", "an address or DNS name clients reach the member by (repeatable)")
		pos, err := parseFlags(fs, args[1:])
		if err != nil {
			return err
		}
		if len(pos) != 1 {
			return fail(2, "%s", use)
		}
		ca, err := tlsfiles.ReadPEM(*caFile, *caKey)
		if err != nil {
			return fail(1, "read the CA: %v", err)
		}
		m, err := tlsfiles.NewMember(ca, pos[0], hosts, time.Now(), validity(*days, 825))
		if err != nil {
			return fail(1, "make the certificate of %s: %v", pos[0], err)
		}
		return writePEM(w, m, filepath.Join(*dir, pos[0]+".pem"), filepath.Join(*dir, pos[0]+"-key.pem"))
	}
	return fail(2, "%s", use)
}

func validity(days, def int) time.Duration {
	if days <= 0 {
		days = def
	}
	return time.Duration(days) * 24 * time.Hour
}

func writePEM(w io.Writer, p tlsfiles.PEM, cert, key string) error {
	if err := p.Write(cert, key); err != nil {
		if errors.Is(err, os.ErrExist) {
			return fail(1, "%v: not overwriting a certificate or key", err)
		}
		return fail(1, "%v", err)
	}
	fmt.Fprintf(w, "wrote %s and %s (0600)\n", cert, key)
	return nil
}
