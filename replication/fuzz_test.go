package replication

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
)

func FuzzFrameReader(f *testing.F) {
	var e enc
	e.u64(3)
	e.u64(4096)
	e.b = append(e.b, make([]byte, 16)...)
	good := appendFrame(nil, frame{typ: fWrite, seq: 1, payload: e.b})
	good = appendFrame(good, frame{typ: fBarrier, seq: 2, payload: []byte{0, 0, 0, 0, 0, 0, 0, 3}})
	f.Add(good)
	f.Add(good[:10])
	f.Add([]byte("GBRP\x05\x00\x00\x00\xff\xff\xff\xff"))
	f.Fuzz(func(t *testing.T, data []byte) {
		fr := newFrameReader(bytes.NewReader(data))
		for i := 0; i < 100; i++ {
			fm, err := fr.read()
			if err != nil {
				return
			}
			if fm.typ == 0 || fm.typ >= frameTypeEnd || len(fm.payload) > maxPayload {
				t.Fatalf("accepted an invalid frame %+v", fm)
			}
			// Payload decoders must not panic either.
			d := dec{b: fm.payload}
			switch fm.typ {
			case fState:
				decodeState(fm.payload)
			case fGen:
				decodeGen(&d)
			default:
				d.u64()
				d.u64()
				d.bytes()
			}
		}
	})
}

func FuzzDecodeState(f *testing.F) {
	f.Add(encodeState(stateMsg{role: Primary, disk: UpToDate, current: 9, bitmap: 3, history: []uint64{1, 2}, dirty: 5}))
	f.Add(encodeState(stateMsg{role: Secondary, disk: UpToDate, current: 9, bitmap: 3, crashed: true, discard: true, dirty: 5}))
	f.Add(encodeState(stateMsg{role: Secondary, disk: UpToDate, current: 9, blank: true}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := decodeState(b)
		if err != nil {
			return
		}
		if again := encodeState(s); !bytes.Equal(again, b) {
			t.Fatalf("state does not round-trip: %x → %+v → %x", b, s, again)
		}
	})
}

func FuzzDecodeActivityLog(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 0, 0, 0, 7, 0, 0, 0, 0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		exts, err := decodeAL(b)
		if err == nil && len(b) > 0 && len(exts) != int(uint32(b[0])<<24|uint32(b[1])<<16|uint32(b[2])<<8|uint32(b[3])) {
			t.Fatalf("decoded %d extents from %x", len(exts), b)
		}
	})
}

// FuzzDispatchAfterHandshake drives the frame dispatcher of an
// established session, in both roles, with any sequence of frames: no
// panic, no hang, and a primary's data and generation never change,
// whatever its peer sends (issue 17, F3).
func FuzzDispatchAfterHandshake(f *testing.F) {
	frameBytes := func(typ frameType, payload []byte) []byte {
		b := []byte{byte(typ), byte(len(payload) >> 8), byte(len(payload))}
		return append(b, payload...)
	}
	var w enc
	w.u64(1)
	w.u64(8 * BlockSize)
	write := append(w.b, bytes.Repeat([]byte{0xab}, 64)...)
	var rs enc
	rs.u64(0)
	rsData := append(rs.b, bytes.Repeat([]byte{0xcd}, 512)...)
	var barrier enc
	barrier.u64(1)
	for _, primary := range []byte{0, 1} {
		f.Add(primary, append(frameBytes(fWrite, write), frameBytes(fBarrier, barrier.b)...))
		f.Add(primary, append(frameBytes(fRSData, rsData), frameBytes(fRSDone, encodeGen(0xbad, []uint64{1}))...))
		f.Add(primary, frameBytes(fGen, encodeGen(0xbad, nil)))
		f.Add(primary, frameBytes(fSkipSync, []byte{0, 0, 0, 0, 0, 0, 0xba, 0xd1}))
		f.Add(primary, frameBytes(fResize, []byte{0, 0, 0, 0, 0, 0x20, 0, 0}))
		f.Add(primary, frameBytes(fResizeDone, []byte{0, 0, 0, 0, 0, 0x20, 0, 0, 0, 0, 0, 2, 'n', 'o'}))
		f.Add(primary, append(frameBytes(fBehind, nil), frameBytes(fRSNeed, []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1})...))
		f.Add(primary, frameBytes(fVerifyReq, append(make([]byte, 8), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1)))
	}
	f.Fuzz(func(t *testing.T, primary byte, data []byte) {
		dir := t.TempDir()
		c := DefaultVolume()
		c.Name, c.Size, c.Path, c.Listen = "data", Size(1<<20), filepath.Join(dir, "data.img"), "127.0.0.1:0"
		c.Peers = []PeerConfig{{Name: "west", Address: "127.0.0.1:1"}}
		v, err := Open(Options{Config: c, Self: "east", Key: testKey, Log: quietLog()})
		if err != nil {
			t.Fatal(err)
		}
		defer v.Close()
		if primary%2 == 1 {
			if err := v.Promote(context.Background(), true); err != nil {
				t.Fatal(err)
			}
			if err := v.WriteAt(bytes.Repeat([]byte{0x5a}, BlockSize), 8*BlockSize, true); err != nil {
				t.Fatal(err)
			}
		}
		before, err := os.ReadFile(c.Path)
		if err != nil {
			t.Fatal(err)
		}
		gen := v.Status().Generation
		p := v.peers["west"]
		s := &session{p: p}
		for len(data) >= 3 {
			typ := frameType(data[0]%byte(frameTypeEnd-1)) + 1
			n := min(int(data[1])<<8|int(data[2]), len(data)-3)
			payload := append([]byte(nil), data[3:3+n]...)
			data = data[3+n:]
			err := p.handle(s, frame{typ: typ, payload: payload})
			if primary%2 == 1 && changesReplica(typ) && err == nil {
				t.Fatalf("the primary took frame type %d", typ)
			}
			if err != nil {
				break // the session ends at the first error, as receiveLoop does
			}
		}
		if primary%2 == 1 {
			after, err := os.ReadFile(c.Path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(before, after) {
				t.Fatal("the primary's data changed")
			}
			if g := v.Status().Generation; g != gen {
				t.Fatalf("the primary's generation moved from %s to %s", gen, g)
			}
		}
	})
}
