package replication

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkRawFileWrite is the limit the volume is measured against:
// sequential 1 MiB writes to a file on the same disk, synced at the end.
func BenchmarkRawFileWrite(b *testing.B) {
	chunk := make([]byte, 1<<20)
	f, err := os.Create(filepath.Join(b.TempDir(), "raw.img"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	b.SetBytes(int64(len(chunk)))
	for i := 0; i < b.N; i++ {
		if _, err := f.WriteAt(chunk, int64(i%512)*int64(len(chunk))); err != nil {
			b.Fatal(err)
		}
	}
	f.Sync()
}

// BenchmarkVolumeWrite writes 1 MiB chunks through a primary with one
// asynchronous peer on loopback; compare its MB/s with
// BenchmarkRawFileWrite (go run ./bench/replication prints the ratio).
func BenchmarkVolumeWrite(b *testing.B) {
	p := newPair(b, 512<<20, func(c *VolumeConfig) { c.SendBuffer = 256 << 20 })
	east := p.open("east")
	p.open("west")
	p.waitState("east", InSync)
	if err := east.Promote(context.Background(), false); err != nil {
		b.Fatal(err)
	}
	chunk := make([]byte, 1<<20)
	b.SetBytes(int64(len(chunk)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := east.WriteAt(chunk, int64(i%512)*int64(len(chunk)), false); err != nil {
			b.Fatal(err)
		}
	}
	if err := east.Flush(); err != nil {
		b.Fatal(err)
	}
}
