package replication

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Backend is a volume's local storage. The file implementation is the real
// one; tests wrap it to inject ENOSPC or EIO.
type Backend interface {
	ReadAt(p []byte, off int64) (int, error)
	WriteAt(p []byte, off int64) (int, error)
	// Punch deallocates a range, which then reads as zeroes.
	Punch(off, length int64) error
	// Sync makes every completed write durable (fdatasync).
	Sync() error
	Close() error
}

// fileBackend is a sparse file of a fixed size, or a block device.
type fileBackend struct {
	f      *os.File
	device bool
	// direct, on a block device that allows it, serves every read and
	// write around the page cache (f then only claims the device, sizes
	// it and deallocates).
	direct *directIO
}

// openFile opens (creating it sparse when missing) the backing file of a
// volume of size bytes. A file smaller than size is refused; of a larger
// one (a resize cut short) the volume uses the first size bytes. A block
// device (a logical volume, a partition) is opened exclusively — one that
// is mounted or open elsewhere is refused — and must hold at least size
// bytes (the volume uses the first size).
func openFile(path string, size int64) (*fileBackend, bool, error) {
	if IsBlockDevice(path) {
		return openDevice(path, size)
	}
	created := false
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if os.IsNotExist(err) && strings.HasPrefix(filepath.Clean(path), "/dev/") {
		// A device that is not there (an LV not created or activated):
		// a file in /dev would vanish at reboot, with the data.
		return nil, false, fmt.Errorf("block device %s does not exist (create or activate it; geobooth makes files, not devices)", path)
	}
	if os.IsNotExist(err) {
		if err = os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, false, fmt.Errorf("create the folder of volume file %s: %w", path, err)
		}
		f, err = os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		created = true
		if err == nil {
			err = f.Truncate(size)
		}
	}
	if err != nil {
		return nil, false, fmt.Errorf("open volume file %s: %w", path, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, false, fmt.Errorf("stat volume file %s: %w", path, err)
	}
	if st.Size() < size {
		f.Close()
		return nil, false, fmt.Errorf("volume file %s has %d bytes, the volume %d", path, st.Size(), size)
	}
	return &fileBackend{f: f}, created, nil
}

func openDevice(path string, size int64) (*fileBackend, bool, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_EXCL, 0)
	if err != nil {
		if errors.Is(err, unix.EBUSY) {
			return nil, false, fmt.Errorf("block device %s is in use (mounted, or open by another program): %w", path, err)
		}
		return nil, false, fmt.Errorf("open block device %s: %w", path, err)
	}
	// A block device's Stat size is 0: its size is where it ends.
	end, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		f.Close()
		return nil, false, fmt.Errorf("size of block device %s: %w", path, err)
	}
	if end < size {
		f.Close()
		return nil, false, fmt.Errorf("block device %s has %d bytes, the volume %d", path, end, size)
	}
	// The claim is f's (O_EXCL); the direct descriptor opens the same
	// device beside it.
	direct, err := openDirect(path)
	if err != nil {
		f.Close()
		return nil, false, err
	}
	return &fileBackend{f: f, device: true, direct: direct}, false, nil
}

// IsBlockDevice reports whether path is a block device (its metadata then
// goes to a folder of its own, not beside it in /dev).
func IsBlockDevice(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode()&os.ModeDevice != 0 && st.Mode()&os.ModeCharDevice == 0
}

// Direct reports whether reads and writes bypass the page cache.
func (b *fileBackend) Direct() bool { return b.direct != nil }

func (b *fileBackend) ReadAt(p []byte, off int64) (int, error) {
	if b.direct != nil {
		return b.direct.ReadAt(p, off)
	}
	return b.f.ReadAt(p, off)
}

func (b *fileBackend) WriteAt(p []byte, off int64) (int, error) {
	if b.direct != nil {
		return b.direct.WriteAt(p, off)
	}
	return b.f.WriteAt(p, off)
}

// Sync flushes the device's cache (and, without direct I/O, the page
// cache's dirty pages first).
func (b *fileBackend) Sync() error { return unix.Fdatasync(int(b.f.Fd())) }

func (b *fileBackend) Close() error {
	if b.direct != nil {
		b.direct.f.Close()
	}
	return b.f.Close()
}

func (b *fileBackend) Punch(off, length int64) error {
	var err error
	if b.direct != nil {
		// No write may read, modify and write back blocks being
		// deallocated.
		b.direct.rmw.Lock()
		err = unix.Fallocate(int(b.f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, length)
		b.direct.rmw.Unlock()
	} else {
		err = unix.Fallocate(int(b.f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, length)
	}
	if err == unix.EOPNOTSUPP {
		// No hole punching on this filesystem: write zeroes.
		return writeZeroes(b, off, length)
	}
	return err
}

func writeZeroes(b Backend, off, length int64) error {
	zero := make([]byte, min(length, 1<<20))
	for length > 0 {
		n := min(length, int64(len(zero)))
		if _, err := b.WriteAt(zero[:n], off); err != nil {
			return err
		}
		off += n
		length -= n
	}
	return nil
}
