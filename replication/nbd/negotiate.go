package nbd

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
)

// The handshake and option haggling (fixed newstyle): STARTTLS, export
// names, NBD_OPT_INFO and NBD_OPT_GO, and the refusals before TLS when the
// export requires it.

func (s *Server) flags() uint16 {
	f := uint16(tfHasFlags | tfSendFlush | tfSendFUA | tfSendTrim | tfSendWriteZeroes)
	if s.o.ReadOnly {
		f |= tfReadOnly
	}
	return f
}

// haggling is a connection during option haggling: STARTTLS replaces its
// stream.
type haggling struct {
	c   net.Conn
	r   *bufio.Reader
	w   *bufio.Writer
	tls bool
}

// startTLS runs the server side of TLS on the connection; the client sent
// nothing after its STARTTLS (it waits for the reply), so nothing is lost.
func (s *Server) startTLS(hs *haggling) error {
	if hs.r.Buffered() > 0 {
		return errors.New("data after NBD_OPT_STARTTLS before the reply")
	}
	tc := tls.Server(hs.c, s.o.TLS)
	if err := tc.Handshake(); err != nil {
		return fmt.Errorf("TLS: %w", err)
	}
	if s.o.AllowClient != nil {
		var cert *x509.Certificate
		if cs := tc.ConnectionState(); len(cs.VerifiedChains) > 0 {
			cert = cs.VerifiedChains[0][0]
		}
		if !s.o.AllowClient(cert) {
			return errors.New("TLS: the client's certificate is not allowed")
		}
	}
	hs.c, hs.tls = tc, true
	hs.r.Reset(tc)
	hs.w.Reset(tc)
	return nil
}

// haggle runs option haggling; ok means transmission starts.
func (s *Server) haggle(hs *haggling, noZeroes bool) (bool, error) {
	for {
		opt, data, err := hs.readOption()
		if err != nil {
			return false, err
		}
		if s.o.RequireTLS && !hs.tls {
			switch opt {
			case optStartTLS, optAbort:
			case optExportName:
				return false, errors.New("NBD_OPT_EXPORT_NAME before TLS, which this export requires")
			default:
				hs.reply(opt, repErrTLSReqd, nil)
				if err := hs.w.Flush(); err != nil {
					return false, err
				}
				continue
			}
		}
		switch opt {
		case optStartTLS:
			switch {
			case s.o.TLS == nil:
				hs.reply(opt, repErrUnsup, nil)
			case hs.tls || len(data) != 0:
				hs.reply(opt, repErrInvalid, nil)
			default:
				hs.reply(opt, repAck, nil)
				if err := hs.w.Flush(); err != nil {
					return false, err
				}
				if err := s.startTLS(hs); err != nil {
					return false, err
				}
				continue
			}
		case optExportName:
			if !s.known(string(data)) {
				return false, fmt.Errorf("unknown export %q", data)
			}
			var b [10]byte
			binary.BigEndian.PutUint64(b[:], uint64(s.o.Backend.Size()))
			binary.BigEndian.PutUint16(b[8:], s.flags())
			hs.w.Write(b[:])
			if !noZeroes {
				hs.w.Write(make([]byte, 124))
			}
			return true, hs.w.Flush()
		case optAbort:
			hs.reply(opt, repAck, nil)
			hs.w.Flush()
			return false, nil
		case optList:
			if len(data) != 0 {
				hs.reply(opt, repErrInvalid, nil)
				break
			}
			var e []byte
			e = binary.BigEndian.AppendUint32(e, uint32(len(s.o.Export)))
			e = append(e, s.o.Export...)
			hs.reply(opt, repServer, e)
			hs.reply(opt, repAck, nil)
		case optInfo, optGo:
			if s.info(hs, opt, data) && opt == optGo {
				return true, hs.w.Flush()
			}
		default:
			hs.reply(opt, repErrUnsup, nil)
		}
		if err := hs.w.Flush(); err != nil {
			return false, err
		}
	}
}

// readOption reads one option: its code and data.
func (hs *haggling) readOption() (uint32, []byte, error) {
	var h [16]byte
	if _, err := io.ReadFull(hs.r, h[:]); err != nil {
		return 0, nil, err
	}
	if binary.BigEndian.Uint64(h[:]) != optMagic {
		return 0, nil, errors.New("bad option magic")
	}
	opt := binary.BigEndian.Uint32(h[8:])
	n := binary.BigEndian.Uint32(h[12:])
	if n > maxOption {
		return 0, nil, fmt.Errorf("option %d with %d bytes of data", opt, n)
	}
	data := make([]byte, n)
	if _, err := io.ReadFull(hs.r, data); err != nil {
		return 0, nil, err
	}
	return opt, data, nil
}

// reply writes an option's reply (flushed by the caller).
func (hs *haggling) reply(opt, typ uint32, payload []byte) error {
	var b [20]byte
	binary.BigEndian.PutUint64(b[:], replyOptMagic)
	binary.BigEndian.PutUint32(b[8:], opt)
	binary.BigEndian.PutUint32(b[12:], typ)
	binary.BigEndian.PutUint32(b[16:], uint32(len(payload)))
	hs.w.Write(b[:])
	_, err := hs.w.Write(payload)
	return err
}

// info answers NBD_OPT_INFO and NBD_OPT_GO: the export's size, flags and
// block sizes; ok when the export exists.
func (s *Server) info(hs *haggling, opt uint32, data []byte) bool {
	name, ok := parseInfoRequest(data)
	switch {
	case !ok:
		hs.reply(opt, repErrInvalid, nil)
		return false
	case !s.known(name):
		hs.reply(opt, repErrUnknown, []byte("no such export"))
		return false
	}
	var e []byte
	e = binary.BigEndian.AppendUint16(e, infoExport)
	e = binary.BigEndian.AppendUint64(e, uint64(s.o.Backend.Size()))
	e = binary.BigEndian.AppendUint16(e, s.flags())
	hs.reply(opt, repInfo, e)
	var bs []byte
	bs = binary.BigEndian.AppendUint16(bs, infoBlockSize)
	bs = binary.BigEndian.AppendUint32(bs, 1)
	bs = binary.BigEndian.AppendUint32(bs, 4096)
	bs = binary.BigEndian.AppendUint32(bs, MaxRequest)
	hs.reply(opt, repInfo, bs)
	hs.reply(opt, repAck, nil)
	return true
}

func (s *Server) known(name string) bool { return name == "" || name == s.o.Export }

// parseInfoRequest reads an NBD_OPT_INFO/GO payload: u32 name length,
// name, u16 count, count u16 info requests (the server sends the export
// and block size information whatever was asked).
func parseInfoRequest(b []byte) (string, bool) {
	if len(b) < 6 {
		return "", false
	}
	nl := binary.BigEndian.Uint32(b)
	if uint64(nl) > uint64(len(b)-6) {
		return "", false
	}
	name := string(b[4 : 4+nl])
	rest := b[4+nl:]
	cnt := int(binary.BigEndian.Uint16(rest))
	return name, len(rest)-2 == 2*cnt
}
