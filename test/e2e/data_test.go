package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

const block = 4096

func nbdURL(site string) string { return fmt.Sprintf("nbd://%s:10809/data", addr[site]) }

// qemuIO runs qemu-io commands from the client against a site's export.
func qemuIO(site string, readOnly bool, cmds ...string) (string, error) {
	args := []string{"qemu-io", "-f", "raw"}
	if readOnly {
		args = append(args, "-r")
	}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	out, err := inNS("client", append(args, nbdURL(site))...)
	if err == nil && (strings.Contains(out, "failed") || strings.Contains(out, "Pattern verification")) {
		err = fmt.Errorf("qemu-io reported a failure")
	}
	return out, err
}

// exported reads the whole volume through a site's NBD export, from the
// client.
func exported(t *testing.T, site string) []byte {
	t.Helper()
	dst := filepath.Join(t.TempDir(), site+"-export.img")
	if out, err := inNS("client", "qemu-img", "convert", "-f", "raw", "-O", "raw", nbdURL(site), dst); err != nil {
		t.Fatalf("read %s's export: %v\n%s", site, err, out)
	}
	b, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// replica reads a site's backing file.
func (g *geo) replica(site string) []byte {
	g.t.Helper()
	b, err := os.ReadFile(filepath.Join(g.host[site], "data.img"))
	if err != nil {
		g.t.Fatal(err)
	}
	return b
}

// writes is a stream of writes from the client: 4 KiB blocks 0..n-1 in
// order, block i filled with the byte i%250+1, each followed by a flush,
// through one qemu-io process.
type writes struct {
	mu    sync.Mutex
	acked int
	done  chan struct{}
}

func startWrites(t *testing.T, site string, n int) *writes {
	t.Helper()
	var cmds []string
	for i := 0; i < n; i++ {
		cmds = append(cmds, fmt.Sprintf("write -P %d %d 4k", i%250+1, i*block), "flush")
	}
	cmd := exec.Command("ip", "netns", "exec", ns("client"), "qemu-io", "-f", "raw", nbdURL(site))
	cmd.Stdin = strings.NewReader(strings.Join(cmds, "\n") + "\nquit\n")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w := &writes{done: make(chan struct{})}
	go func() {
		defer close(w.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "wrote 4096/4096") {
				w.mu.Lock()
				w.acked++
				w.mu.Unlock()
			}
		}
		cmd.Wait()
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-w.done
	})
	return w
}

// Acked is how many writes the client has seen complete.
func (w *writes) Acked() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.acked
}

// prefix returns k such that blocks 0..k-1 of img hold the sequence and
// every later block of the first n is zero; ok is false when img is not
// such a prefix (not crash-consistent).
func prefix(img []byte, n int) (int, bool) {
	k := 0
	for k < n && bytes.Count(img[k*block:(k+1)*block], []byte{byte(k%250 + 1)}) == block {
		k++
	}
	for i := k; i < n; i++ {
		if bytes.Count(img[i*block:(i+1)*block], []byte{0}) != block {
			return k, false
		}
	}
	return k, true
}
