package replication

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"slices"

	"github.com/geobooth/geobooth/replication/nbd"
)

// The NBD export runs only while the replica is primary.

// nbdBackend adapts the volume to the NBD server.
type nbdBackend struct{ v *Volume }

func (b nbdBackend) Size() int64                                 { return b.v.Size() }
func (b nbdBackend) ReadAt(p []byte, off int64) (int, error)     { return b.v.ReadAt(p, off) }
func (b nbdBackend) WriteAt(p []byte, off int64, fua bool) error { return b.v.WriteAt(p, off, fua) }
func (b nbdBackend) Flush() error                                { return b.v.Flush() }
func (b nbdBackend) Trim(off, n int64) error                     { return b.v.Trim(off, n) }
func (b nbdBackend) WriteZeroes(off, n int64, fua bool) error    { return b.v.WriteZeroes(off, n, fua) }

func mapNBDError(err error) uint32 {
	switch {
	case errors.Is(err, ErrNotPrimary), errors.Is(err, ErrClosed), errors.Is(err, ErrLeaseEnded):
		return nbd.EPERM
	case errors.Is(err, ErrOutOfRange):
		return nbd.EINVAL
	}
	return nbd.EIO
}

// startNBD starts the export (called with the fence held).
func (v *Volume) startNBD() error {
	v.mu.Lock()
	running := v.nbd != nil
	v.mu.Unlock()
	if v.cfg.NBDListen == "" || running {
		return nil
	}
	ln, err := net.Listen("tcp", v.cfg.NBDListen)
	if err != nil {
		return err
	}
	o := nbd.Options{Export: v.cfg.Export, Backend: nbdBackend{v}, Log: v.log, MapError: mapNBDError,
		Refused: v.met.nbdRefused.Inc}
	if v.cfg.NBDTLS == "on" || v.cfg.NBDTLS == "require" {
		if v.tls == nil {
			ln.Close()
			return fmt.Errorf("nbd_tls = %q needs the member's [tls] files", v.cfg.NBDTLS)
		}
		o.TLS, o.RequireTLS = v.tls.Server(tls.VerifyClientCertIfGiven), v.cfg.NBDTLS == "require"
		if allowed := v.cfg.NBDTLSClients; len(allowed) > 0 {
			o.AllowClient = func(c *x509.Certificate) bool {
				return c != nil && len(c.DNSNames) > 0 && slices.Contains(allowed, c.DNSNames[0])
			}
		}
	}
	s := nbd.Serve(ln, o)
	v.mu.Lock()
	v.nbd = s
	v.mu.Unlock()
	v.log.Info("NBD export started", "address", v.cfg.NBDListen, "export", v.cfg.Export)
	return nil
}

// stopNBD stops the export and drops its clients.
func (v *Volume) stopNBD() {
	v.mu.Lock()
	s := v.nbd
	v.nbd = nil
	v.mu.Unlock()
	if s != nil {
		s.Close()
		v.log.Info("NBD export stopped")
	}
}

// NBDAddr is the export's address while primary ("" otherwise).
func (v *Volume) NBDAddr() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	if s, ok := v.nbd.(*nbd.Server); ok {
		return s.Addr()
	}
	return ""
}
