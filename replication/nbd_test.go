package replication

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/geobooth/geobooth/kit/testenv"
)

func tool(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}

// The export works for real NBD clients from Debian, advertises flush,
// FUA, trim and write-zeroes, and everything written through it reaches
// the secondary.
func TestRealNBDClientsThroughTheExport(t *testing.T) {
	testenv.RequireTool(t, "qemu-img", "qemu-utils")
	testenv.RequireTool(t, "qemu-io", "qemu-utils")
	testenv.RequireTool(t, "nbdinfo", "libnbd-bin")
	testenv.RequireTool(t, "nbdcopy", "libnbd-bin")
	nbdAddr := freeAddr(t)
	p := newPair(t, 64<<20, func(c *VolumeConfig) {
		if c.Path != "" && strings.Contains(c.Path, "east") {
			c.NBDListen = nbdAddr
		}
	})
	east := p.open("east")
	p.open("west")
	p.waitState("east", InSync)
	ctx := context.Background()
	must(t, east.Promote(ctx, false))
	url := "nbd://" + nbdAddr + "/data"

	info := tool(t, "nbdinfo", url)
	for _, want := range []string{"export-size: 67108864", "can_flush: true", "can_fua: true", "can_trim: true", "can_zero: true"} {
		if !strings.Contains(info, want) {
			t.Errorf("nbdinfo lacks %q:\n%s", want, info)
		}
	}
	if def := tool(t, "nbdinfo", "nbd://"+nbdAddr); !strings.Contains(def, "export-size: 67108864") {
		t.Errorf("the default export is not served:\n%s", def)
	}

	dir := t.TempDir()
	img := filepath.Join(dir, "src.img")
	must(t, os.WriteFile(img, randomData(7, 8<<20), 0o644))
	tool(t, "nbdcopy", "--flush", img, url)
	tool(t, "qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", img, url)
	tool(t, "qemu-io", "-f", "raw", "-c", "write -P 0xab 16M 1M", "-c", "write -f -P 0xcd 20M 64k",
		"-c", "write -z 24M 1M", "-c", "discard 8M 64k", "-c", "flush",
		"-c", "read -P 0xab 16M 1M", "-c", "read -P 0xcd 20M 64k", "-c", "read -P 0 24M 1M", url)
	back := filepath.Join(dir, "back.img")
	tool(t, "nbdcopy", url, back)
	got, _ := os.ReadFile(back)
	want, _ := os.ReadFile(img)
	if !bytes.Equal(got[:8<<20], want) {
		t.Fatal("data read back through the export differs from what was written")
	}
	dctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	must(t, east.Drain(dctx))
	p.assertEqual()

	// A demoted replica's export is gone.
	must(t, east.Demote(ctx))
	if out, err := exec.Command("nbdinfo", url).CombinedOutput(); err == nil {
		t.Fatalf("nbdinfo still answered after demote:\n%s", out)
	}
}
