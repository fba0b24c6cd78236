package replication

import (
	"os"
	"path/filepath"
	"testing"
)

// A bitmap flush that fails keeps its pages to write, and a flush that
// finds nothing left waits for the one writing them.
func TestBitmapFlushThatFailsKeepsItsMarks(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v.bitmap")
	b, err := openBitmap(path, 1<<20)
	must(t, err)
	b.setRange(5, 9)
	good := b.f
	bad, err := os.Open(path) // read-only: the write fails
	must(t, err)
	b.f = bad
	if err := b.flush(); err == nil {
		t.Fatal("a flush to a read-only file succeeded")
	}
	bad.Close()
	if !b.dirtyIn(5, 9) {
		t.Fatal("the marks a failed flush took are no longer to write")
	}
	b.f = good
	must(t, b.flush())
	must(t, b.close())
	b2, err := openBitmap(path, 1<<20)
	must(t, err)
	defer b2.close()
	if b2.ones() != 5 {
		t.Fatalf("read back %d marks, want 5", b2.ones())
	}
}
