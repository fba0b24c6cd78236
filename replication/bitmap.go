package replication

import (
	"fmt"
	"math/bits"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// BlockSize is the unit of dirty tracking: one bitmap bit per 4 KiB.
const BlockSize = 4096

// bitmap tracks, for one peer, the blocks that differ (or may differ) from
// that peer's copy. It lives in memory and in its own file; pages (4 KiB of
// bits) changed since the last flush are written on flush.
type bitmap struct {
	// fmu is held through a flush: a flush that finds nothing left to
	// write returns only once the one that took the pages is durable.
	fmu   sync.Mutex
	mu    sync.Mutex
	words []uint64
	dirty map[int]bool // pages to write
	f     *os.File
	count uint64
}

const bitmapPageWords = BlockSize / 8

func openBitmap(path string, blocks int64) (*bitmap, error) {
	words := (blocks + 63) / 64
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open bitmap %s: %w", path, err)
	}
	size := (words*8 + BlockSize - 1) / BlockSize * BlockSize
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if st.Size() != size {
		if err := f.Truncate(size); err != nil {
			f.Close()
			return nil, fmt.Errorf("size bitmap %s: %w", path, err)
		}
	}
	b := &bitmap{words: make([]uint64, words), dirty: map[int]bool{}, f: f}
	raw := make([]byte, size)
	if _, err := f.ReadAt(raw, 0); err != nil {
		f.Close()
		return nil, fmt.Errorf("read bitmap %s: %w", path, err)
	}
	for i := range b.words {
		w := uint64(0)
		for j := 0; j < 8; j++ {
			w |= uint64(raw[i*8+j]) << (8 * j)
		}
		b.words[i] = w
		b.count += uint64(bits.OnesCount64(w))
	}
	return b, nil
}

// grow extends the bitmap to blocks (the new blocks clean), in its file
// too.
func (b *bitmap) grow(blocks int64) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	words := (blocks + 63) / 64
	if words <= int64(len(b.words)) {
		return nil
	}
	size := (words*8 + BlockSize - 1) / BlockSize * BlockSize
	if err := b.f.Truncate(size); err != nil {
		return fmt.Errorf("grow bitmap %s: %w", b.f.Name(), err)
	}
	b.words = append(b.words, make([]uint64, words-int64(len(b.words)))...)
	return nil
}

// setRange marks blocks [first, last] dirty.
func (b *bitmap) setRange(first, last int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for blk := first; blk <= last; blk++ {
		w, m := blk/64, uint64(1)<<(blk%64)
		if b.words[w]&m == 0 {
			b.words[w] |= m
			b.count++
			b.dirty[int(w/bitmapPageWords)] = true
		}
	}
}

func (b *bitmap) clear(blk int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	w, m := blk/64, uint64(1)<<(blk%64)
	if b.words[w]&m != 0 {
		b.words[w] &^= m
		b.count--
		b.dirty[int(w/bitmapPageWords)] = true
	}
}

// ones returns how many blocks are marked.
func (b *bitmap) ones() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.count
}

// snapshot copies the words.
func (b *bitmap) snapshot() []uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]uint64(nil), b.words...)
}

// merge ORs other words in.
func (b *bitmap) merge(other []uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i := range b.words {
		if i >= len(other) {
			break
		}
		add := other[i] &^ b.words[i]
		if add != 0 {
			b.words[i] |= add
			b.count += uint64(bits.OnesCount64(add))
			b.dirty[i/bitmapPageWords] = true
		}
	}
}

// clearAll empties the bitmap.
func (b *bitmap) clearAll() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, w := range b.words {
		if w != 0 {
			b.words[i] = 0
			b.dirty[i/bitmapPageWords] = true
		}
	}
	b.count = 0
}

// dirtyIn reports whether a page holding blocks [first, last] has marks
// not yet written.
func (b *bitmap) dirtyIn(first, last int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for pg := int(first / 64 / bitmapPageWords); pg <= int(last/64/bitmapPageWords); pg++ {
		if b.dirty[pg] {
			return true
		}
	}
	return false
}

// flush writes the changed pages and syncs the file. Pages it could not
// make durable stay marked to write.
func (b *bitmap) flush() error {
	b.fmu.Lock()
	defer b.fmu.Unlock()
	b.mu.Lock()
	pages := make(map[int][]byte, len(b.dirty))
	for p := range b.dirty {
		raw := make([]byte, BlockSize)
		for i := 0; i < bitmapPageWords; i++ {
			wi := p*bitmapPageWords + i
			if wi >= len(b.words) {
				break
			}
			w := b.words[wi]
			for j := 0; j < 8; j++ {
				raw[i*8+j] = byte(w >> (8 * j))
			}
		}
		pages[p] = raw
	}
	b.dirty = map[int]bool{}
	b.mu.Unlock()
	if len(pages) == 0 {
		return nil
	}
	err := b.writePages(pages)
	if err != nil {
		b.mu.Lock()
		for p := range pages {
			b.dirty[p] = true
		}
		b.mu.Unlock()
	}
	return err
}

func (b *bitmap) writePages(pages map[int][]byte) error {
	for p, raw := range pages {
		if _, err := b.f.WriteAt(raw, int64(p)*BlockSize); err != nil {
			return fmt.Errorf("write bitmap: %w", err)
		}
	}
	if err := unix.Fdatasync(int(b.f.Fd())); err != nil {
		return fmt.Errorf("sync bitmap: %w", err)
	}
	return nil
}

func (b *bitmap) close() error {
	err := b.flush()
	if cerr := b.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// runs calls fn for each run of consecutive marked blocks in words (at
// most maxRun blocks each), in disk order; fn returns false to stop.
func runs(words []uint64, maxRun int64, fn func(first, n int64) bool) {
	var start, n int64
	for i, w := range words {
		for w != 0 {
			blk := int64(i)*64 + int64(bits.TrailingZeros64(w))
			w &= w - 1
			if n > 0 && (blk != start+n || n == maxRun) {
				if !fn(start, n) {
					return
				}
				n = 0
			}
			if n == 0 {
				start = blk
			}
			n++
		}
	}
	if n > 0 {
		fn(start, n)
	}
}
