package replication

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// The activity log records the hot extents of the primary: before a write
// lands in an extent that is not active, the extent is added and the log
// made durable. After a crash of the primary, every active extent is
// counted as possibly unreplicated (DRBD's "hot regions"), so the resync
// covers writes no peer acknowledged, without a full copy.

const (
	extentShift = 22 // 4 MiB extents
	extentSize  = 1 << extentShift
)

type activityLog struct {
	mu   sync.Mutex
	f    *os.File
	cap  int
	lru  []uint32 // most recent last
	set  map[uint32]bool
	buf  []byte
	open bool
	// evict is called (under no lock of the log) before an extent leaves,
	// so what is not yet acknowledged in it can be put in the bitmaps.
	evict func(ext uint32) error
	// extents is how many the volume has (activations ahead stop there).
	extents uint32
}

// lookahead is how many extents a sequential stream activates at once:
// one log write (and its fdatasync, a device cache flush) per 32 MiB
// instead of per 4 MiB. A write that starts an extent right after the
// last one activated is taken as sequential. After a crash, at most the
// extents a stream was about to reach are resynced in addition.
const lookahead = 8

// setSize bounds activations ahead to a volume of size bytes.
func (al *activityLog) setSize(size int64) {
	al.mu.Lock()
	al.extents = uint32((size + extentSize - 1) >> extentShift)
	al.mu.Unlock()
}

var errALCorrupt = errors.New("activity log corrupt")

func openAL(path string, capacity int) (*activityLog, []uint32, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, err
	}
	al := &activityLog{f: f, cap: capacity, set: map[uint32]bool{}, open: true}
	raw, err := os.ReadFile(path)
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	exts, err := decodeAL(raw)
	return al, exts, err
}

func decodeAL(raw []byte) ([]uint32, error) {
	if len(raw) == 0 {
		return nil, nil
	}
	if len(raw) < 8 {
		return nil, errALCorrupt
	}
	n := int(binary.BigEndian.Uint32(raw))
	if n < 0 || len(raw) < 4+4*n+4 || n > 1<<20 {
		return nil, errALCorrupt
	}
	body := raw[:4+4*n]
	if crc32.Checksum(body, castagnoli) != binary.BigEndian.Uint32(raw[4+4*n:]) {
		return nil, errALCorrupt
	}
	out := make([]uint32, n)
	for i := range out {
		out[i] = binary.BigEndian.Uint32(raw[4+4*i:])
	}
	return out, nil
}

// activate makes the extents of [off, off+n) active, writing the log
// durably first when one was not.
func (al *activityLog) activate(off, n int64) error {
	if n <= 0 {
		return nil
	}
	first, last := uint32(off>>extentShift), uint32((off+n-1)>>extentShift)
	al.mu.Lock()
	defer al.mu.Unlock()
	if !al.set[first] && first > 0 && first < al.extents && len(al.lru) > 0 && al.lru[len(al.lru)-1] == first-1 {
		// Sequential: take the extents ahead in the same log write
		// (never more than the log holds).
		last = max(last, min(first+lookahead-1, al.extents-1, first+uint32(al.cap)/2))
	}
	changed := false
	for e := first; e <= last; e++ {
		if al.set[e] {
			continue
		}
		for len(al.lru) >= al.cap {
			old := al.lru[0]
			if al.evict != nil {
				if err := al.evict(old); err != nil {
					return err
				}
			}
			al.lru = al.lru[1:]
			delete(al.set, old)
		}
		al.lru = append(al.lru, e)
		al.set[e] = true
		changed = true
	}
	if !changed {
		return nil
	}
	return al.writeLocked()
}

func (al *activityLog) writeLocked() error {
	al.buf = al.buf[:0]
	al.buf = binary.BigEndian.AppendUint32(al.buf, uint32(len(al.lru)))
	for _, e := range al.lru {
		al.buf = binary.BigEndian.AppendUint32(al.buf, e)
	}
	al.buf = binary.BigEndian.AppendUint32(al.buf, crc32.Checksum(al.buf, castagnoli))
	// Always the same length, room for a full log, so that the file's
	// size never changes: fdatasync then writes the data only, not the
	// file system's metadata (a journal commit each time, half of a
	// sequential stream's time in bench/replication). The reader ignores
	// what follows the checksum.
	if full := 8 + 4*al.cap; len(al.buf) < full {
		al.buf = append(al.buf, make([]byte, full-len(al.buf))...)
	}
	if _, err := al.f.WriteAt(al.buf, 0); err != nil {
		return err
	}
	return unix.Fdatasync(int(al.f.Fd()))
}

// reset empties the log (a clean shutdown, or every peer in sync).
func (al *activityLog) reset() error {
	al.mu.Lock()
	defer al.mu.Unlock()
	al.lru, al.set = nil, map[uint32]bool{}
	return al.writeLocked()
}

func (al *activityLog) close() error { return al.f.Close() }
