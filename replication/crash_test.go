package replication

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// Crash consistency: a primary process is killed (SIGKILL) at a random
// point of a workload of writes and flushes; the secondary must then hold
// exactly the data after some number of completed epochs, never part of
// one. The workload is a pure function of the seed, so the test can
// rebuild every prefix.

const crashVolSize = 4 << 20

type crashWrite struct {
	off  int64
	data []byte
}

// crashWorkload generates the epochs (writes between flushes) of a seed,
// one at a time.
type crashWorkload struct{ r *rand.Rand }

func newCrashWorkload(seed int64) *crashWorkload {
	return &crashWorkload{r: rand.New(rand.NewSource(seed))}
}

func (w *crashWorkload) next() []crashWrite {
	var out []crashWrite
	n := 1 + w.r.Intn(8)
	for i := 0; i < n; i++ {
		blocks := 1 + w.r.Intn(16)
		first := w.r.Int63n(crashVolSize/BlockSize - int64(blocks))
		data := make([]byte, blocks*BlockSize)
		w.r.Read(data)
		out = append(out, crashWrite{off: first * BlockSize, data: data})
	}
	return out
}

type crashSpec struct {
	Dir, East, West string
	Seed            int64
}

// TestCrashConsistencyHelper is the primary process of
// TestPrimaryKilledAtRandomLeavesAPrefixOfEpochs; it does nothing on its
// own.
func TestCrashConsistencyHelper(t *testing.T) {
	raw := os.Getenv("GEOBOOTH_CRASH_HELPER")
	if raw == "" {
		t.Skip("helper process of TestPrimaryKilledAtRandomLeavesAPrefixOfEpochs")
	}
	var spec crashSpec
	must(t, json.Unmarshal([]byte(raw), &spec))
	c := DefaultVolume()
	c.Name, c.Size, c.Path, c.Listen = "data", crashVolSize, filepath.Join(spec.Dir, "east", "data.img"), spec.East
	c.Peers = []PeerConfig{{Name: "west", Address: spec.West}}
	os.MkdirAll(filepath.Dir(c.Path), 0o755)
	v, err := Open(Options{Config: c, Self: "east", Key: testKey, Log: quietLog()})
	must(t, err)
	must(t, v.Start(context.Background()))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	must(t, v.peers["west"].waitState(ctx, InSync))
	must(t, v.Promote(ctx, false))
	fmt.Println("ready")
	wl := newCrashWorkload(spec.Seed)
	for j := 0; ; j++ {
		for _, w := range wl.next() {
			must(t, v.WriteAt(w.data, w.off, false))
		}
		must(t, v.Flush())
		fmt.Println("epoch", j)
	}
}

func TestPrimaryKilledAtRandomLeavesAPrefixOfEpochs(t *testing.T) {
	runs := 20
	if testing.Short() {
		runs = 5
	}
	if v, err := strconv.Atoi(os.Getenv("GEOBOOTH_CRASH_RUNS")); err == nil && v > 0 {
		runs = v
	}
	for seed := int64(1); seed <= int64(runs); seed++ {
		k, flushed := crashRun(t, seed)
		t.Logf("seed %d: killed after %d flushes returned; the secondary holds exactly %d epochs", seed, flushed, k)
	}
}

// crashRun runs one seed and returns the number of epochs the secondary
// holds and how many flushes the primary had seen complete.
func crashRun(t *testing.T, seed int64) (int, int) {
	dir := t.TempDir()
	spec := crashSpec{Dir: dir, East: freeAddr(t), West: freeAddr(t), Seed: seed}
	wc := DefaultVolume()
	wc.Name, wc.Size, wc.Path, wc.Listen = "data", crashVolSize, filepath.Join(dir, "west", "data.img"), spec.West
	wc.Peers = []PeerConfig{{Name: "east", Address: spec.East}}
	os.MkdirAll(filepath.Dir(wc.Path), 0o755)
	west, err := Open(Options{Config: wc, Self: "west", Key: testKey, Log: quietLog()})
	must(t, err)
	must(t, west.Start(context.Background()))

	raw, _ := json.Marshal(spec)
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashConsistencyHelper$", "-test.v")
	cmd.Env = append(os.Environ(), "GEOBOOTH_CRASH_HELPER="+string(raw))
	out, err := cmd.StdoutPipe()
	must(t, err)
	cmd.Stderr = os.Stderr
	must(t, cmd.Start())
	lines := bufio.NewScanner(out)
	flushed := 0
	ready := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for lines.Scan() {
			switch l := lines.Text(); {
			case l == "ready":
				close(ready)
			case len(l) > 6 && l[:6] == "epoch ":
				n, _ := strconv.Atoi(l[6:])
				flushed = n + 1
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("seed %d: the primary never became ready", seed)
	}
	r := rand.New(rand.NewSource(seed))
	time.Sleep(time.Duration(20+r.Intn(400)) * time.Millisecond)
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	<-done
	must(t, west.Close())

	got, err := os.ReadFile(wc.Path)
	must(t, err)
	img := make([]byte, crashVolSize)
	if bytes.Equal(got, img) {
		return 0, flushed
	}
	wl := newCrashWorkload(seed)
	for k := 0; k < flushed+2; k++ {
		for _, w := range wl.next() {
			copy(img[w.off:], w.data)
		}
		if bytes.Equal(got, img) {
			return k + 1, flushed
		}
	}
	t.Fatalf("seed %d: the secondary holds no prefix of epochs (the primary completed %d flushes)", seed, flushed)
	return 0, 0
}
