package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/geobooth/geobooth/replication"
)

// lagVolume is the size of the lag run's volume.
const lagVolume = 1 << 30

// storage is where the bench writes: files in dir, or (devs set) loop
// devices over files in dir, one raw and one per replica; the peer's
// (west's) in peerDir when set (another disk, or RAM: then the primary's
// disk is the only one the volume waits for, as when each site has its
// own).
type storage struct {
	dir, peerDir string
	devs         map[string]string // "raw", "east", "west" → /dev/loopN
}

// dirOf is where replica name's storage goes.
func (s storage) dirOf(name string) string {
	if name == "west" && s.peerDir != "" {
		return s.peerDir
	}
	return s.dir
}

func (s storage) kind() string {
	if s.devs == nil {
		return "files"
	}
	return "loop devices"
}

func (s storage) rawKind() string {
	if s.devs == nil {
		return "file"
	}
	return "raw loop device, O_DIRECT"
}

// newLoopStorage attaches three loop devices of size bytes, each doing
// direct I/O to its backing file where that file system allows it (as a
// disk would: no second page cache in between).
func newLoopStorage(s storage, size int64) storage {
	s.devs = map[string]string{}
	for _, name := range []string{"raw", "east", "west"} {
		img := filepath.Join(s.dirOf(name), name+"-backing.img")
		f, err := os.Create(img)
		if err != nil {
			fail(err)
		}
		err = f.Truncate(size)
		f.Close()
		if err != nil {
			fail(err)
		}
		out, err := exec.Command("losetup", "-f", "--show", "--direct-io=on", img).CombinedOutput()
		if err != nil {
			s.close()
			fail(fmt.Errorf("losetup (-devices needs root): %v: %s", err, out))
		}
		s.devs[name] = strings.TrimSpace(string(out))
	}
	return s
}

func (s storage) close() {
	for name, dev := range s.devs {
		exec.Command("losetup", "-d", dev).Run()
		os.Remove(filepath.Join(s.dirOf(name), name+"-backing.img"))
	}
	if s.peerDir != "" {
		os.RemoveAll(filepath.Join(s.peerDir, "vol"))
	}
}

// raw opens the raw target: a new file, or the raw loop device.
func (s storage) raw() *os.File {
	if dev := s.devs["raw"]; dev != "" {
		// As the volume writes a device: around the page cache.
		f, err := os.OpenFile(dev, os.O_WRONLY|unix.O_DIRECT, 0)
		if err != nil {
			fail(err)
		}
		return f
	}
	path := filepath.Join(s.dir, "raw.img")
	os.Remove(path)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		fail(err)
	}
	return f
}

func (s storage) doneRaw(f *os.File) {
	f.Close()
	if s.devs == nil {
		os.Remove(f.Name())
	}
}

// aligned is a buffer of n bytes at a page boundary, as O_DIRECT needs.
func aligned(n int) []byte {
	b := make([]byte, n+4096)
	skip := (4096 - int(uintptr(unsafe.Pointer(&b[0]))%4096)) % 4096
	return b[skip : skip+n]
}

// latencyWrites is how many 4 KiB writes a latency run times.
const latencyWrites = 500

// protocolCRun times one 4 KiB write at a time through a protocol C
// volume (each completes once the peer has it on stable storage) and
// returns the median, in seconds.
func protocolCRun(st storage) float64 {
	east, west := pair(st, 64<<20, nil, "", "C")
	defer west.Close()
	defer east.Close()
	block := make([]byte, replication.BlockSize)
	took := make([]float64, 0, latencyWrites)
	for i := 0; i < latencyWrites; i++ {
		block[0] = byte(i)
		start := time.Now()
		if err := east.WriteAt(block, int64(i%1024)*replication.BlockSize, false); err != nil {
			fail(err)
		}
		took = append(took, time.Since(start).Seconds())
	}
	return median(took)
}

// rawSyncLatency times a 4 KiB write and fdatasync on the raw target (what
// the secondary does for each protocol C write), median in seconds.
func rawSyncLatency(st storage) float64 {
	f := st.raw()
	defer st.doneRaw(f)
	if st.devs == nil {
		if err := f.Truncate(64 << 20); err != nil {
			fail(err)
		}
	}
	block := aligned(replication.BlockSize)
	took := make([]float64, 0, latencyWrites)
	for i := 0; i < latencyWrites; i++ {
		block[0] = byte(i)
		start := time.Now()
		if _, err := f.WriteAt(block, int64(i%1024)*replication.BlockSize); err != nil {
			fail(err)
		}
		if err := unix.Fdatasync(int(f.Fd())); err != nil {
			fail(err)
		}
		took = append(took, time.Since(start).Seconds())
	}
	return median(took)
}

// loopbackRTT is the median round trip of 64 bytes over a TCP loopback
// connection, in seconds.
func loopbackRTT() float64 {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fail(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		b := make([]byte, 64)
		for {
			if _, err := c.Read(b); err != nil {
				return
			}
			if _, err := c.Write(b); err != nil {
				return
			}
		}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		fail(err)
	}
	defer c.Close()
	b := make([]byte, 64)
	took := make([]float64, 0, latencyWrites)
	for i := 0; i < latencyWrites; i++ {
		start := time.Now()
		if _, err := c.Write(b); err != nil {
			fail(err)
		}
		if _, err := c.Read(b); err != nil {
			fail(err)
		}
		took = append(took, time.Since(start).Seconds())
	}
	sort.Float64s(took)
	return took[len(took)/2]
}

// cpuTimes are this machine's CPU times from /proc/stat, in clock ticks:
// busy (user, nice, system, interrupts), waiting for I/O, and all.
type cpuTimes struct{ busy, iowait, total float64 }

// cpuShare is the share of all CPUs' time that was busy, and that waited
// for I/O.
type cpuShare struct{ busy, iowait float64 }

func readCPU() cpuTimes {
	raw, err := os.ReadFile("/proc/stat")
	if err != nil {
		fail(err)
	}
	var user, nice, sys, idle, iowait, irq, softirq, steal float64
	if _, err := fmt.Sscanf(string(raw), "cpu %g %g %g %g %g %g %g %g", &user, &nice, &sys, &idle, &iowait, &irq, &softirq, &steal); err != nil {
		fail(fmt.Errorf("/proc/stat: %w", err))
	}
	busy := user + nice + sys + irq + softirq
	return cpuTimes{busy: busy, iowait: iowait, total: busy + idle + iowait + steal}
}

func (c cpuTimes) since(before cpuTimes) cpuShare {
	total := c.total - before.total
	if total <= 0 {
		return cpuShare{}
	}
	return cpuShare{busy: (c.busy - before.busy) / total, iowait: (c.iowait - before.iowait) / total}
}
