// Package testenv holds what every test of the project shares about its
// environment: real peers from Debian that must exist in CI, and waiting
// on a condition with a deadline instead of sleeping.
package testenv

import (
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// RequireTool returns the path of a program a test needs. Without it the
// test fails when CI is set, and is skipped otherwise, naming the Debian
// package to install.
func RequireTool(t testing.TB, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s not found: CI must install the Debian package %s", name, pkg)
	}
	t.Skipf("%s not found: install the Debian package %s to run this test", name, pkg)
	return ""
}

// Eventually retries f every 50 ms until it returns nil or the timeout
// passes, then fails the test with f's last error.
func Eventually(t testing.TB, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not true after %v: %v", timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// RequireRoot skips a test that needs root (mounts, network namespaces),
// or fails it when CI is set, saying why it needs root.
func RequireRoot(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("this test needs root (%s): CI must run it as root", why)
	}
	t.Skipf("this test needs root (%s): run go test as root", why)
}

// Ports for tests come from below Linux's ephemeral range (32768–60999),
// so that no outgoing connection takes one before the program under test
// listens on it. Each test binary (one per package, and packages run at
// once) claims a window of 1,000 ports of its own for its lifetime, with a
// lock file that the kernel releases when the process ends, and hands the
// ports out in turn from a random start: neither two tests of one package
// nor two packages running side by side are given the same port while
// both may use it. (Windows chosen by a hash of the binary's name used to
// collide: 32 test binaries, 21 windows.)
const (
	portsFrom   = 11000 // above examples/local's NBD ports (10809, 10810)
	portsWindow = 1000
	portsWins   = (32768 - portsFrom) / portsWindow
)

var (
	portMu   sync.Mutex
	portNext = -1
	portBase int
)

// claimWindow returns the first port of a window no other process holds,
// and the descriptor of the lock file that holds it (a raw descriptor: no
// finalizer closes it while the process lives), trying the windows in
// turn from one chosen by the binary's name. With every window taken
// (more test processes at once than windows) it returns that one and -1.
func claimWindow(dir string) (int, int) {
	h := fnv.New32a()
	h.Write([]byte(filepath.Base(os.Args[0])))
	first := int(h.Sum32() % portsWins)
	for i := 0; i < portsWins; i++ {
		w := (first + i) % portsWins
		fd, err := syscall.Open(filepath.Join(dir, fmt.Sprintf("geobooth-test-ports-%d.lock", w)), syscall.O_RDWR|syscall.O_CREAT|syscall.O_CLOEXEC, 0o600)
		if err != nil {
			continue
		}
		if err := syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			syscall.Close(fd)
			continue
		}
		return portsFrom + w*portsWindow, fd
	}
	return portsFrom + first*portsWindow, -1
}

// FreePort returns a loopback port that was free a moment ago, for TCP
// and UDP both, and that this process has not handed out lately.
func FreePort(t testing.TB) int {
	t.Helper()
	portMu.Lock()
	defer portMu.Unlock()
	if portNext < 0 {
		portNext = rand.IntN(portsWindow)
		portBase, _ = claimWindow(os.TempDir())
	}
	base := portBase
	for i := 0; i < portsWindow; i++ {
		port := base + portNext%portsWindow
		portNext++
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		l.Close()
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		u.Close()
		return port
	}
	t.Fatal("no free port")
	return 0
}

// LoopDevice attaches a new blank file of size bytes to a loop device
// (root only: skipped without it, failed in CI) and returns the device's
// path; it is detached when the test ends.
func LoopDevice(t testing.TB, size int64) string {
	t.Helper()
	dev, _ := LoopDeviceOver(t, size)
	return dev
}

// LoopDeviceOver is LoopDevice; it returns the backing file too (grow it,
// then losetup -c the device, to grow the device).
func LoopDeviceOver(t testing.TB, size int64) (dev, backing string) {
	t.Helper()
	RequireRoot(t, "attaching loop devices")
	losetup := RequireTool(t, "losetup", "mount")
	img := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	err = f.Truncate(size)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(losetup, "-f", "--show", img).CombinedOutput()
	if err != nil {
		t.Fatalf("losetup: %v\n%s", err, out)
	}
	dev = string(out[:len(out)-1])
	t.Cleanup(func() {
		if out, err := exec.Command(losetup, "-d", dev).CombinedOutput(); err != nil {
			t.Logf("losetup -d %s: %v\n%s", dev, err, out)
		}
	})
	return dev, img
}
