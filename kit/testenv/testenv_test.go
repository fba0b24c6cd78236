package testenv

import (
	"syscall"
	"testing"
)

// TestWindowsAreNotShared: while one claim holds a window, the next claim
// gets another one; once it is released, the window is free again.
func TestWindowsAreNotShared(t *testing.T) {
	dir := t.TempDir()
	a, la := claimWindow(dir)
	b, lb := claimWindow(dir)
	if la < 0 || lb < 0 {
		t.Fatalf("no lock: %d %d", la, lb)
	}
	defer syscall.Close(lb)
	if a == b {
		t.Fatalf("two claims share the window at %d", a)
	}
	syscall.Close(la)
	c, lc := claimWindow(dir)
	if lc < 0 || c != a {
		t.Fatalf("after the release got %d, want %d back", c, a)
	}
	syscall.Close(lc)
}
