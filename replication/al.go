package replication

import (
	"encoding/binary"
	"errors"
	"fmt"
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
//
// A log write is a device cache flush. A sequential stream would wait for
// one at every window of extents it enters, and each wait also stops the
// disk's write-back from overlapping the stream's writes. So once a stream
// enters the window it activated last, the next window is written in the
// background (one transaction in flight at a time) while the stream
// writes: it usually finds the next window durable when it gets there.
//
// Safety does not depend on the timing:
//   - a write waits until every extent it touches is durable in the log
//     (an extent in the transaction in flight is not usable yet);
//   - an extent leaves the log only when no write is in progress in it,
//     and no write can start in it from then on (it waits for the
//     transaction, then activates it again); its bitmap marks are made
//     durable (evict) before the log that drops it is written.
//   - a failed log write fails every later write (the log's state on disk
//     is then unknown; after a failed fdatasync, retrying it proves
//     nothing): the volume needs a restart, which reads the log as it is.

const (
	extentShift = 22 // 4 MiB extents
	extentSize  = 1 << extentShift
)

type activityLog struct {
	mu   sync.Mutex
	cond *sync.Cond // broadcast when a transaction ends or a write is done
	f    *os.File
	cap  int
	// lru is the log as written, or as it will be once the transaction
	// in flight is durable; most recent last.
	lru    []uint32
	active map[uint32]bool // durable in the log: writes may start
	refs   map[uint32]int  // writes in progress
	// flight is the transaction being written (nil: none); its extents
	// are not usable until it ends.
	flight *alTx
	failed error // a log write failed: every write fails
	// window is the last run of extents a sequential stream activated:
	// when a write enters it, the next one is written ahead.
	window     [2]uint32
	haveWindow bool
	// evict is called (under no lock of the log) before an extent leaves,
	// so what is not yet acknowledged in it can be put in the bitmaps.
	evict func(ext uint32) error
	// failedHook hears of the log write that failed (once, under no lock
	// of the log).
	failedHook func(error)
	// extents is how many the volume has (activations ahead stop there).
	extents uint32
	// writes counts log writes, waits the writes that waited for one.
	writes, waits int
}

// alTx is a log write: the extents it adds and those it drops.
type alTx struct{ added, evicted []uint32 }

func (tx *alTx) has(e uint32) bool {
	return tx != nil && (contains(tx.added, e) || contains(tx.evicted, e))
}

// lookahead is how many extents a sequential stream activates at once
// (a window): one log write (and its fdatasync, a device cache flush) per
// 128 MiB instead of per 4 MiB. A write that starts an extent right after
// the last one activated is taken as sequential. After a crash, at most
// the extents a stream was about to reach (two windows) are resynced in
// addition. bench/replication -devices, local path / raw, two runs of 3
// rounds each: 0.72 and 0.77 with windows of 8 extents, 0.84 and 0.89
// with 16, 0.97 and 0.99 with 32 (each with the window ahead written in
// the background).
const lookahead = 32

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
	al := &activityLog{f: f, cap: capacity, active: map[uint32]bool{}, refs: map[uint32]int{}}
	al.cond = sync.NewCond(&al.mu)
	raw, err := os.ReadFile(path)
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	exts, err := decodeAL(raw)
	return al, exts, err
}

// openLog opens the volume's activity log. It returns the extents it
// held (what a crash leaves hot) and why they could not be read, or an
// error when the log cannot be opened at all.
func (v *Volume) openLog(size int64) ([]uint32, error, error) {
	al, exts, readErr := openAL(v.cfg.metaBase()+".al", v.cfg.ALExtents)
	if al == nil {
		return nil, nil, fmt.Errorf("volume %q: activity log: %w", v.cfg.Name, readErr)
	}
	v.al = al
	v.al.evict = v.evictExtent
	v.al.failedHook = func(err error) {
		v.log.Error("activity log write failed: every write to the volume fails until it is restarted", "err", err)
	}
	v.al.setSize(size)
	return exts, readErr, nil
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

// windowLen is how many extents a window of a sequential stream holds:
// two windows (the one written and the one ahead) fit in half the log.
func (al *activityLog) windowLen() uint32 {
	return max(1, min(lookahead, uint32(al.cap)/4))
}

// activate makes the extents of [off, off+n) active, writing the log
// durably first when one was not, and counts a write in progress in each:
// the caller calls done(off, n) once the write is done and shipped (its
// bitmap marks or its place in a peer's queue then cover it).
func (al *activityLog) activate(off, n int64) error {
	if n <= 0 {
		return nil
	}
	first, last := uint32(off>>extentShift), uint32((off+n-1)>>extentShift)
	al.mu.Lock()
	defer al.mu.Unlock()
	waited := false
	for {
		if al.failed != nil {
			return fmt.Errorf("log write failed (the volume needs a restart): %w", al.failed)
		}
		missing, unusable := false, false
		for e := first; e <= last; e++ {
			switch {
			case al.active[e]:
			case al.flight.has(e):
				unusable = true
			default:
				missing = true
			}
		}
		if !missing && !unusable {
			for e := first; e <= last; e++ {
				al.refs[e]++
			}
			if waited {
				al.waits++
			}
			al.aheadLocked(first)
			return nil
		}
		if unusable || al.flight != nil {
			waited = true
			al.cond.Wait()
			continue
		}
		// A synchronous transaction: the extents this write needs, and
		// a window ahead when the write continues the newest extent.
		want := extentRun(first, last)
		if len(al.lru) > 0 && first > 0 && al.lru[len(al.lru)-1] == first-1 && first < al.extents {
			end := max(last, min(first+al.windowLen()-1, al.extents-1))
			want = extentRun(first, end)
			al.window, al.haveWindow = [2]uint32{first, end}, true
		}
		if !al.prepareLocked(want, len(want)-int(last-first+1)) {
			// Every extent that could leave has a write in
			// progress: wait for one to end.
			waited = true
			al.cond.Wait()
			continue
		}
		waited = true
		al.commitLocked()
	}
}

// extentRun is the extents first to last.
func extentRun(first, last uint32) []uint32 {
	out := make([]uint32, 0, last-first+1)
	for e := first; e <= last; e++ {
		out = append(out, e)
	}
	return out
}

// aheadLocked starts writing the window after the stream's last one in
// the background when a write at extent first entered that last window.
func (al *activityLog) aheadLocked(first uint32) {
	if al.flight != nil || !al.haveWindow || first < al.window[0] || first > al.window[1] {
		return
	}
	start := al.window[1] + 1
	if start >= al.extents || start == 0 {
		return
	}
	end := min(start+al.windowLen()-1, al.extents-1)
	want := extentRun(start, end)
	if !al.prepareLocked(want, len(want)) || al.flight == nil {
		return
	}
	al.window = [2]uint32{start, end}
	go func() {
		al.mu.Lock()
		defer al.mu.Unlock()
		al.commitLocked()
	}()
}

// prepareLocked starts a transaction (al.flight) adding want (of which
// the last optional ones may be left out when no extent can make room for
// them): the log's new content, where the oldest extents that have no
// write in progress and are not wanted leave. It reports false when a
// required extent found no room; it starts none when want is in the log.
func (al *activityLog) prepareLocked(want []uint32, optional int) bool {
	var added, evicted []uint32
	size := len(al.lru)
	for i, e := range want {
		if contains(al.lru, e) {
			continue
		}
		if size >= al.cap {
			old, found := al.oldestIdleLocked(want, evicted)
			if !found {
				if i < len(want)-optional {
					return false
				}
				break
			}
			evicted = append(evicted, old)
			size--
		}
		added = append(added, e)
		size++
	}
	if len(added) == 0 {
		return true
	}
	lru := make([]uint32, 0, size)
	for _, e := range al.lru {
		if !contains(evicted, e) {
			lru = append(lru, e)
		}
	}
	al.lru = append(lru, added...)
	for _, e := range evicted {
		delete(al.active, e)
	}
	al.flight = &alTx{added: added, evicted: evicted}
	return true
}

// oldestIdleLocked is the oldest extent of the log with no write in
// progress, neither wanted nor already leaving.
func (al *activityLog) oldestIdleLocked(want, leaving []uint32) (uint32, bool) {
	for _, e := range al.lru {
		if al.refs[e] == 0 && !contains(want, e) && !contains(leaving, e) {
			return e, true
		}
	}
	return 0, false
}

func contains(xs []uint32, x uint32) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// commitLocked writes the transaction prepared: the leaving extents'
// marks first, then the log. It releases al.mu meanwhile.
func (al *activityLog) commitLocked() {
	tx, buf := al.flight, al.encodeLocked()
	al.mu.Unlock()
	var err error
	for _, e := range tx.evicted {
		if al.evict != nil {
			if err = al.evict(e); err != nil {
				break
			}
		}
	}
	if err == nil {
		err = al.write(buf)
	}
	al.mu.Lock()
	al.flight = nil
	al.writes++
	for _, e := range tx.added {
		if err == nil {
			al.active[e] = true
		}
	}
	first := err != nil && al.failed == nil
	if err != nil {
		al.failed = err
	}
	al.cond.Broadcast()
	if first && al.failedHook != nil {
		al.mu.Unlock()
		al.failedHook(err)
		al.mu.Lock()
	}
}

// done ends the writes counted by activate(off, n).
func (al *activityLog) done(off, n int64) {
	if n <= 0 {
		return
	}
	first, last := uint32(off>>extentShift), uint32((off+n-1)>>extentShift)
	al.mu.Lock()
	for e := first; e <= last; e++ {
		if al.refs[e]--; al.refs[e] <= 0 {
			delete(al.refs, e)
		}
	}
	al.cond.Broadcast()
	al.mu.Unlock()
}

func (al *activityLog) encodeLocked() []byte {
	buf := make([]byte, 0, 8+4*max(al.cap, len(al.lru)))
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(al.lru)))
	for _, e := range al.lru {
		buf = binary.BigEndian.AppendUint32(buf, e)
	}
	buf = binary.BigEndian.AppendUint32(buf, crc32.Checksum(buf, castagnoli))
	// Always the same length, room for a full log, so that the file's
	// size never changes: fdatasync then writes the data only, not the
	// file system's metadata (a journal commit each time, half of a
	// sequential stream's time in bench/replication). The reader ignores
	// what follows the checksum.
	if full := 8 + 4*al.cap; len(buf) < full {
		buf = append(buf, make([]byte, full-len(buf))...)
	}
	return buf
}

func (al *activityLog) write(buf []byte) error {
	if _, err := al.f.WriteAt(buf, 0); err != nil {
		return err
	}
	return unix.Fdatasync(int(al.f.Fd()))
}

// counts returns how many times the log was written, and how many writes
// waited for it.
func (al *activityLog) counts() (writes, waits int) {
	al.mu.Lock()
	defer al.mu.Unlock()
	return al.writes, al.waits
}

// idleLocked waits until no transaction is in flight.
func (al *activityLog) idleLocked() {
	for al.flight != nil {
		al.cond.Wait()
	}
}

// reset empties the log (a clean shutdown, or every peer in sync). No
// write may be in progress.
func (al *activityLog) reset() error {
	al.mu.Lock()
	defer al.mu.Unlock()
	al.idleLocked()
	al.lru = nil
	al.active, al.refs = map[uint32]bool{}, map[uint32]int{}
	al.haveWindow = false
	return al.write(al.encodeLocked())
}

func (al *activityLog) close() error {
	al.mu.Lock()
	al.idleLocked()
	al.mu.Unlock()
	return al.f.Close()
}
