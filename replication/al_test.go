package replication

import (
	"errors"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// The activity log keeps one size (so that fdatasync writes no metadata),
// reads back what it holds, takes the extents ahead of a sequential stream
// a window at a time (never past the volume's end), and only the extent
// written for a random write.
func TestActivityLogWritesLessForASequentialStream(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v.al")
	al, exts, err := openAL(path, 64)
	must(t, err)
	defer al.close()
	if len(exts) != 0 {
		t.Fatalf("a new log holds %v", exts)
	}
	const extents = 100
	al.setSize(extents*extentSize - 5)
	sizes := map[int64]bool{}
	for off := int64(0); off < extents*extentSize-5; off += 1 << 20 {
		n := min(1<<20, extents*extentSize-5-off)
		must(t, al.activate(off, n))
		al.done(off, n)
		st, err := os.Stat(path)
		must(t, err)
		sizes[st.Size()] = true
	}
	al.mu.Lock()
	al.idleLocked()
	writes, lru := al.writes, append([]uint32(nil), al.lru...)
	al.mu.Unlock()
	// The first extent alone, then windows.
	if want := 1 + (extents-1+int(al.windowLen())-1)/int(al.windowLen()); writes > want {
		t.Fatalf("a sequential stream over %d extents wrote the log %d times, want at most %d", extents, writes, want)
	}
	if len(sizes) != 1 {
		t.Fatalf("the log file changed size: %v", sizes)
	}
	for _, e := range lru {
		if e >= extents {
			t.Fatalf("extent %d activated past the volume's end (%d extents)", e, extents)
		}
	}
	raw, err := os.ReadFile(path)
	must(t, err)
	got, err := decodeAL(raw)
	if err != nil || len(got) != len(lru) || got[len(got)-1] != extents-1 {
		t.Fatalf("read back %v (%v), hold %v", got, err, lru)
	}
	// A random write: its extent only.
	must(t, al.reset())
	for _, off := range []int64{50 * extentSize, 20*extentSize + 100} {
		must(t, al.activate(off, 4096))
		al.done(off, 4096)
	}
	al.mu.Lock()
	al.idleLocked()
	n := len(al.lru)
	al.mu.Unlock()
	if n != 2 {
		t.Fatalf("two random writes activated %d extents", n)
	}
}

// The log is written ahead of a sequential stream while other writes go
// on, and extents leave it to make room. Whatever the timing: when
// activate returns, the log on disk holds the write's extents, and an
// extent never leaves while a write is in progress in it (here one held
// from the start to the end, a stream that goes round the log three
// times, and random writes beside it).
func TestActivityLogCoversEveryWriteInProgress(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v.al")
	al, _, err := openAL(path, 8)
	must(t, err)
	defer al.close()
	const extents = 40
	al.setSize(extents * extentSize)
	var mu sync.Mutex
	inProgress := map[uint32]int{}
	evicted := 0
	al.evict = func(e uint32) error {
		mu.Lock()
		defer mu.Unlock()
		evicted++
		if inProgress[e] > 0 {
			t.Errorf("extent %d leaves the log with a write in progress", e)
		}
		return nil
	}
	onDisk := func() []uint32 {
		for {
			raw, err := os.ReadFile(path)
			must(t, err)
			// A read beside a write of the log may see part of
			// each: the checksum tells; read again.
			if exts, err := decodeAL(raw); err == nil {
				return exts
			}
		}
	}
	write := func(off, n int64, hold func()) {
		if err := al.activate(off, n); err != nil {
			t.Error(err)
			return
		}
		first, last := uint32(off>>extentShift), uint32((off+n-1)>>extentShift)
		mu.Lock()
		for e := first; e <= last; e++ {
			inProgress[e]++
		}
		mu.Unlock()
		logged := onDisk()
		for e := first; e <= last; e++ {
			if !contains(logged, e) {
				t.Errorf("a write in extent %d started; the log on disk holds %v", e, logged)
			}
		}
		hold()
		mu.Lock()
		for e := first; e <= last; e++ {
			inProgress[e]--
		}
		mu.Unlock()
		al.done(off, n)
	}
	release := make(chan struct{})
	held := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		write(3*extentSize, 4096, func() { close(held); <-release })
	}()
	<-held
	go func() {
		defer wg.Done()
		rng := rand.New(rand.NewSource(1))
		for i := 0; i < 200; i++ {
			write(rng.Int63n(extents)*extentSize, 4096, func() {})
		}
	}()
	for round := 0; round < 3; round++ {
		for off := int64(0); off < extents*extentSize; off += 1 << 20 {
			write(off, 1<<20, func() {})
		}
	}
	if logged := onDisk(); !contains(logged, 3) {
		t.Errorf("the held write's extent 3 left the log: %v", logged)
	}
	close(release)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if evicted < 2*extents {
		t.Fatalf("only %d extents left the log: the test did not go round it", evicted)
	}
}

// A log write that fails (here the marks of a leaving extent could not be
// made durable) fails that write and every later one: the log on disk is
// no longer known. The failure is reported once (the volume logs it).
func TestActivityLogFailureIsFinal(t *testing.T) {
	al, _, err := openAL(filepath.Join(t.TempDir(), "v.al"), 4)
	must(t, err)
	defer al.close()
	al.setSize(64 * extentSize)
	broken := errors.New("bitmap device gone")
	al.evict = func(uint32) error { return broken }
	var heard []error
	al.failedHook = func(err error) { heard = append(heard, err) }
	var first error
	for e := int64(0); e < 16 && first == nil; e += 2 {
		if first = al.activate(e*extentSize, 4096); first == nil {
			al.done(e*extentSize, 4096)
		}
	}
	if !errors.Is(first, broken) {
		t.Fatalf("a failed eviction gave %v", first)
	}
	al.evict = nil
	err = al.activate(0, 4096)
	if !errors.Is(err, broken) || !strings.Contains(err.Error(), "restart") {
		t.Fatalf("a write after the failure: %v", err)
	}
	if len(heard) != 1 || !errors.Is(heard[0], broken) {
		t.Fatalf("the failure was reported %v", heard)
	}
}
