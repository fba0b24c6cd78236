package replication

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/geobooth/geobooth/kit/testenv"
)

// fdFlags reads the open flags of f from /proc.
func fdFlags(t *testing.T, f *os.File) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/self/fdinfo/%d", f.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "flags:"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 8, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no flags in %s", b)
	return 0
}

// Issue 18: a volume on a block device reads and writes it with O_DIRECT.
// Requests of any alignment (of offset, length and memory), concurrent
// unaligned writes into the same blocks, and deallocation all leave on
// the device exactly what was written, as a reader through the page cache
// sees it too.
func TestBlockDevicesAreWrittenAroundThePageCache(t *testing.T) {
	const size = 1 << 20
	dev := testenv.LoopDevice(t, size)
	b, _, err := openFile(dev, size)
	must(t, err)
	defer b.Close()
	if !b.Direct() || !(&Volume{be: b}).DirectIO() {
		t.Fatal("a loop device is not opened for direct I/O")
	}
	if fl := fdFlags(t, b.direct.f); fl&0o40000 == 0 {
		t.Fatalf("the device's descriptor has flags %o, without O_DIRECT", fl)
	}
	want := make([]byte, size)
	write := func(p []byte, off int64) {
		t.Helper()
		if n, err := b.WriteAt(p, off); err != nil || n != len(p) {
			t.Fatalf("WriteAt(%d bytes at %d) = %d, %v", len(p), off, n, err)
		}
		copy(want[off:], p)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	random := func(n int) []byte {
		p := make([]byte, n)
		for i := range p {
			p[i] = byte(rng.Uint32())
		}
		return p
	}
	write(random(64<<10), 0)          // aligned
	write(random(4097)[1:], 8192)     // aligned offset and length, unaligned memory
	write(random(100), 1000)          // unaligned, inside one block
	write(random(3*4096+7), 20000)    // unaligned, across blocks
	write(random(512), 512*1024+512)  // one 512-byte block
	must(t, b.Punch(128<<10, 64<<10)) // deallocated: reads as zeroes
	clear(want[128<<10 : 192<<10])
	// Concurrent unaligned writes of distinct bytes of the same blocks:
	// no read-modify-write may undo another's.
	var wg sync.WaitGroup
	pieces := make([][]byte, 64)
	for i := range pieces {
		pieces[i] = random(96)
	}
	for i := range pieces {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := b.WriteAt(pieces[i], 300*1024+int64(i)*100); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	for i, p := range pieces {
		copy(want[300*1024+i*100:], p)
	}
	must(t, b.Sync())
	got := make([]byte, size)
	if _, err := b.ReadAt(got, 0); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read back through the volume: %v, equal %v", err, bytes.Equal(got, want))
	}
	part := make([]byte, 333)
	if _, err := b.ReadAt(part, 999); err != nil || !bytes.Equal(part, want[999:999+333]) {
		t.Fatalf("an unaligned read: %v, equal %v", err, bytes.Equal(part, want[999:999+333]))
	}
	cached, err := os.ReadFile(dev)
	must(t, err)
	if !bytes.Equal(cached[:size], want) {
		t.Fatal("a reader through the page cache sees other data")
	}
}
