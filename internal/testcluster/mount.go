package testcluster

import (
	"os"
	"os/exec"
	"testing"

	"github.com/geobooth/geobooth/kit/testenv"
)

// Disk is a folder on a tmpfs of its own, to be made read-only (a failed
// disk) and writable again. A remount changes the file system itself, so
// it reaches daemons in other mount namespaces (ip netns exec) too.
type Disk struct {
	t   testing.TB
	dir string
}

// MountDisk mounts a tmpfs on dir (created if need be) for the rest of the
// test. It needs root.
func MountDisk(t testing.TB, dir string) *Disk {
	t.Helper()
	testenv.RequireRoot(t, "mounting a state folder read-only")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs on %s: %v\n%s", dir, err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	return &Disk{t: t, dir: dir}
}

// ReadOnly makes the disk refuse writes (true) or take them again.
func (d *Disk) ReadOnly(ro bool) {
	d.t.Helper()
	opt := "remount,rw"
	if ro {
		opt = "remount,ro"
	}
	if out, err := exec.Command("mount", "-o", opt, d.dir).CombinedOutput(); err != nil {
		d.t.Fatalf("mount -o %s %s: %v\n%s", opt, d.dir, err, out)
	}
}
