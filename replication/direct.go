package replication

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// directIO reads and writes a block device around the page cache
// (O_DIRECT), as DRBD's own I/O does: the data is not cached twice (in
// the page cache of the device and in that of whatever runs on the
// volume), and a write is on the device when it returns (a flush, Sync,
// still empties the device's own cache). O_DIRECT needs offsets, lengths
// and buffer addresses aligned to the device's logical block size: an
// unaligned request is served through an aligned bounce buffer, a write
// as read, modify, write of the blocks it touches, excluding any other
// write meanwhile.
type directIO struct {
	f *os.File
	// lbs is the logical block size (a power of two); memory buffers are
	// aligned to pageAlign.
	lbs int64
	// rmw: aligned writes share it, a read-modify-write holds it alone.
	rmw sync.RWMutex
}

// DirectIO reports whether the volume's storage is read and written
// around the page cache (O_DIRECT: a block device that allows it).
func (v *Volume) DirectIO() bool {
	d, ok := v.be.(interface{ Direct() bool })
	return ok && d.Direct()
}

// pageAlign aligns the bounce buffers (any logical block size divides it).
const pageAlign = 4096

// openDirect opens the device path with O_DIRECT; nil without an error
// when the device refuses it (EINVAL).
func openDirect(path string) (*directIO, error) {
	f, err := os.OpenFile(path, os.O_RDWR|unix.O_DIRECT, 0)
	if errors.Is(err, unix.EINVAL) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open block device %s for direct I/O: %w", path, err)
	}
	lbs, err := unix.IoctlGetInt(int(f.Fd()), unix.BLKSSZGET)
	if err != nil || lbs <= 0 || lbs&(lbs-1) != 0 || lbs > pageAlign {
		f.Close()
		return nil, fmt.Errorf("logical block size of %s: %d, %v", path, lbs, err)
	}
	return &directIO{f: f, lbs: int64(lbs)}, nil
}

// span is the aligned range of blocks that [off, off+n) touches.
func (d *directIO) span(off int64, n int) (int64, int64) {
	start := off &^ (d.lbs - 1)
	end := (off + int64(n) + d.lbs - 1) &^ (d.lbs - 1)
	return start, end
}

func (d *directIO) aligned(p []byte, off int64) bool {
	return off&(d.lbs-1) == 0 && int64(len(p))&(d.lbs-1) == 0 && (len(p) == 0 || uintptr(unsafe.Pointer(&p[0]))&(pageAlign-1) == 0)
}

// bounce is an aligned buffer of n bytes.
func bounce(n int64) []byte {
	b := make([]byte, n+pageAlign)
	skip := (pageAlign - int(uintptr(unsafe.Pointer(&b[0]))&(pageAlign-1))) & (pageAlign - 1)
	return b[skip : skip+int(n)]
}

func (d *directIO) ReadAt(p []byte, off int64) (int, error) {
	if d.aligned(p, off) {
		return d.f.ReadAt(p, off)
	}
	start, end := d.span(off, len(p))
	b := bounce(end - start)
	if _, err := d.f.ReadAt(b, start); err != nil {
		return 0, err
	}
	return copy(p, b[off-start:]), nil
}

func (d *directIO) WriteAt(p []byte, off int64) (int, error) {
	start, end := d.span(off, len(p))
	if start == off && end == off+int64(len(p)) {
		d.rmw.RLock()
		defer d.rmw.RUnlock()
		if d.aligned(p, off) {
			return d.f.WriteAt(p, off)
		}
		b := bounce(end - start)
		copy(b, p)
		if _, err := d.f.WriteAt(b, off); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	d.rmw.Lock()
	defer d.rmw.Unlock()
	b := bounce(end - start)
	if _, err := d.f.ReadAt(b, start); err != nil {
		return 0, err
	}
	copy(b[off-start:], p)
	if _, err := d.f.WriteAt(b, start); err != nil {
		return 0, err
	}
	return len(p), nil
}
