package replication

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/geobooth/geobooth/kit/testenv"
	"github.com/geobooth/geobooth/kit/tlsfiles"
)

// clientCreds writes a TLS client folder as qemu's tls-creds-x509 and
// libnbd's tls-certificates read it: ca-cert.pem, and with a name a
// client-cert.pem and client-key.pem of ca.
func clientCreds(t *testing.T, ca tlsfiles.PEM, name string) string {
	t.Helper()
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "ca-cert.pem"), ca.Cert, 0o644))
	if name != "" {
		c, err := tlsfiles.NewMember(ca, name, nil, time.Now(), time.Hour)
		must(t, err)
		must(t, c.Write(filepath.Join(dir, "client-cert.pem"), filepath.Join(dir, "client-key.pem")))
	}
	return dir
}

// Issue 17, F1: the NBD export had no authentication and no TLS. With
// nbd_tls = "require" a plain client is refused, and qemu-io with
// tls-creds-x509 and nbdinfo nbds:// work; nbd_tls_clients lets only the
// named client certificates in.
func TestNBDOverTLSWithRealClients(t *testing.T) {
	testenv.RequireTool(t, "qemu-io", "qemu-utils")
	testenv.RequireTool(t, "nbdinfo", "libnbd-bin")
	for _, allowed := range [][]string{nil, {"app1"}} {
		t.Run(fmt.Sprintf("clients %v", allowed), func(t *testing.T) {
			ca, err := tlsfiles.NewCA("test", time.Now(), time.Hour)
			must(t, err)
			dir := t.TempDir()
			must(t, os.WriteFile(filepath.Join(dir, "ca.pem"), ca.Cert, 0o644))
			m, err := tlsfiles.NewMember(ca, "east", []string{"127.0.0.1"}, time.Now(), time.Hour)
			must(t, err)
			must(t, m.Write(filepath.Join(dir, "east.pem"), filepath.Join(dir, "east-key.pem")))
			src, err := tlsfiles.Open(tlsfiles.Files{CA: filepath.Join(dir, "ca.pem"), Cert: filepath.Join(dir, "east.pem"), Key: filepath.Join(dir, "east-key.pem")})
			must(t, err)
			nbdAddr := freeAddr(t)
			port := nbdAddr[strings.LastIndex(nbdAddr, ":")+1:]
			p := newPair(t, 8<<20, func(c *VolumeConfig) {
				if strings.Contains(c.Path, "east") {
					c.NBDListen, c.NBDTLS, c.NBDTLSClients = nbdAddr, "require", allowed
				}
			})
			p.tls["east"] = src
			east := p.open("east")
			must(t, east.Promote(context.Background(), true))

			qemu := func(creds string, cmds ...string) (string, error) {
				args := []string{"-f", "raw"}
				if creds != "" {
					args = []string{"--object", "tls-creds-x509,id=tls0,endpoint=client,dir=" + creds, "--image-opts",
						"driver=nbd,server.type=inet,server.host=127.0.0.1,server.port=" + port + ",export=data,tls-creds=tls0"}
				} else {
					args = append(args, "nbd://"+nbdAddr+"/data")
				}
				for _, c := range cmds {
					args = append(args, "-c", c)
				}
				out, err := exec.Command("qemu-io", args...).CombinedOutput()
				if err == nil && strings.Contains(string(out), "failed") {
					err = fmt.Errorf("qemu-io reported a failure")
				}
				return string(out), err
			}
			if out, err := qemu("", "read 0 4k"); err == nil {
				t.Fatalf("a plain NBD client was served:\n%s", out)
			}
			good := clientCreds(t, ca, "app1")
			if out, err := qemu(good, "write -P 0x3c 1M 64k", "flush", "read -P 0x3c 1M 64k"); err != nil || !strings.Contains(out, "wrote 65536/65536") {
				t.Fatalf("qemu-io over TLS: %v\n%s", err, out)
			}
			if b := p.file("east")[1<<20 : 1<<20+64<<10]; !bytes.Equal(b, bytes.Repeat([]byte{0x3c}, 64<<10)) {
				t.Fatal("the write over TLS did not reach the volume")
			}
			out, err := exec.Command("nbdinfo", "nbds://127.0.0.1:"+port+"/data?tls-certificates="+good).CombinedOutput()
			if err != nil || !strings.Contains(string(out), "export-size: 8388608") {
				t.Fatalf("nbdinfo nbds://: %v\n%s", err, out)
			}
			// Another CA's client, another name, no certificate.
			other, err := tlsfiles.NewCA("other", time.Now(), time.Hour)
			must(t, err)
			foreign := clientCreds(t, other, "app1")
			os.WriteFile(filepath.Join(foreign, "ca-cert.pem"), ca.Cert, 0o644) // trusts the server
			if out, err := qemu(foreign, "read 0 4k"); err == nil {
				t.Fatalf("a client certificate of another CA was served:\n%s", out)
			}
			for _, name := range []string{"app2", ""} {
				out, err := qemu(clientCreds(t, ca, name), "read 0 4k")
				if allowed == nil && err != nil {
					t.Fatalf("client %q refused without an allow-list: %v\n%s", name, err, out)
				}
				if allowed != nil && err == nil {
					t.Fatalf("client %q served although only %v are allowed:\n%s", name, allowed, out)
				}
			}
		})
	}
}
