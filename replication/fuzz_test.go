package replication

import (
	"bytes"
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
