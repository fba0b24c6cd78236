package e2e

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	tc "github.com/geobooth/geobooth/internal/testcluster"
)

const block = tc.BlockSize

// clientCreds is the client's TLS folder (ca-cert.pem, client-cert.pem,
// client-key.pem), made by newGeo: examples/geo requires TLS on NBD.
var clientCreds string

// nbdImage are the qemu-io and qemu-img arguments that open a site's
// export over TLS.
func nbdImage(site string) []string {
	return []string{"--object", "tls-creds-x509,id=tls0,endpoint=client,dir=" + clientCreds, "--image-opts",
		fmt.Sprintf("driver=nbd,server.type=inet,server.host=%s,server.port=10809,export=data,tls-creds=tls0", addr[site])}
}

// qemuIO runs qemu-io commands from the client against a site's export.
func qemuIO(site string, readOnly bool, cmds ...string) (string, error) {
	args := []string{"qemu-io"}
	if readOnly {
		args = append(args, "-r")
	}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	out, err := inNS("client", append(args, nbdImage(site)...)...)
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
	if out, err := inNS("client", append(append([]string{"qemu-img", "convert"}, nbdImage(site)...), "-O", "raw", dst)...); err != nil {
		t.Fatalf("read %s's export: %v\n%s", site, err, out)
	}
	b, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// replica reads a site's backing device.
func (g *geo) replica(site string) []byte {
	g.t.Helper()
	b, err := os.ReadFile(g.dev[site])
	if err != nil {
		g.t.Fatal(err)
	}
	return b
}

// writes is a stream of writes from the client: tc.SequenceScript
// through one qemu-io process.
type writes struct {
	mu    sync.Mutex
	acked int
	done  chan struct{}
}

func startWrites(t *testing.T, site string, n int) *writes {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns("client"), "qemu-io"}, nbdImage(site)...)...)
	cmd.Stdin = strings.NewReader(tc.SequenceScript(n))
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

var prefix = tc.SequencePrefix
