package replication

import (
	"os"
	"path/filepath"
	"testing"
)

// The activity log keeps one size (so that fdatasync writes no metadata),
// reads back what it holds, takes the extents ahead of a sequential stream
// in one log write (never past the volume's end), and only the extent
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
	writes := 0
	sizes := map[int64]bool{}
	for off := int64(0); off < extents*extentSize-5; off += 1 << 20 {
		before := len(al.lru)
		must(t, al.activate(off, 1<<20))
		if len(al.lru) != before {
			writes++
			st, err := os.Stat(path)
			must(t, err)
			sizes[st.Size()] = true
		}
	}
	if want := 1 + (extents-1+lookahead-1)/lookahead; writes > want {
		t.Fatalf("a sequential stream over %d extents wrote the log %d times, want at most %d", extents, writes, want)
	}
	if len(sizes) != 1 {
		t.Fatalf("the log file changed size: %v", sizes)
	}
	for _, e := range al.lru {
		if e >= extents {
			t.Fatalf("extent %d activated past the volume's end (%d extents)", e, extents)
		}
	}
	raw, err := os.ReadFile(path)
	must(t, err)
	got, err := decodeAL(raw)
	if err != nil || len(got) != len(al.lru) || got[len(got)-1] != extents-1 {
		t.Fatalf("read back %v (%v), hold %v", got, err, al.lru)
	}
	// A random write: its extent only.
	must(t, al.reset())
	must(t, al.activate(50*extentSize, 4096))
	must(t, al.activate(20*extentSize+100, 4096))
	if len(al.lru) != 2 {
		t.Fatalf("two random writes activated %v", al.lru)
	}
}
