package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/geobooth/geobooth/kit/tlsfiles"
	"github.com/geobooth/geobooth/replication"
)

// peerCPU (-peer-cpu), when not negative, is the one CPU the peer (west)
// runs on, in a process of its own, while this process (the primary, the
// raw run) runs on the others: as when each site has its own machine, the
// peer's work does not take the primary's CPU time. The kernel's work for
// the loopback socket still falls mostly on the sender's CPU, so the
// primary pays more than it would over a real link.
var peerCPU = -1

// peerSpec is what the peer process is told: its volume and, for TLS,
// the folder of the bench's certificates.
type peerSpec struct {
	Config replication.VolumeConfig
	TLSDir string
}

// tlsFor opens member name's certificate from dir (makeTLS wrote it).
func tlsFor(dir, name string) replication.TLS {
	src, err := tlsfiles.Open(tlsfiles.Files{CA: filepath.Join(dir, "ca.pem"),
		Cert: filepath.Join(dir, name+".pem"), Key: filepath.Join(dir, name+"-key.pem")})
	if err != nil {
		fail(err)
	}
	return src
}

// openVolume opens and starts member name's replica.
func openVolume(c replication.VolumeConfig, name string, reg prometheus.Registerer, creds replication.TLS) *replication.Volume {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	v, err := replication.Open(replication.Options{Config: c, Self: name, Key: []byte("bench-key-0123456"), Log: log, Registry: reg,
		TLS: creds})
	if err != nil {
		fail(err)
	}
	if err := v.Start(context.Background()); err != nil {
		fail(err)
	}
	return v
}

// remotePeer is the peer's process; Close ends it once its volume closed.
type remotePeer struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
}

func (r *remotePeer) Close() error {
	r.stdin.Close()
	return r.cmd.Wait()
}

// startPeer runs this program again as the peer (-serve-peer) on peerCPU
// and returns once its volume is started.
func startPeer(spec peerSpec) *remotePeer {
	b, err := json.Marshal(spec)
	if err != nil {
		fail(err)
	}
	self, err := os.Executable()
	if err != nil {
		fail(err)
	}
	cmd := exec.Command(self, "-peer-cpu", strconv.Itoa(peerCPU), "-serve-peer", string(b))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		fail(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		fail(err)
	}
	if err := cmd.Start(); err != nil {
		fail(fmt.Errorf("start the peer process: %w", err))
	}
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "ready\n" {
		cmd.Process.Kill()
		fail(fmt.Errorf("the peer process did not start: %q %v", line, err))
	}
	return &remotePeer{cmd: cmd, stdin: stdin}
}

// servePeer is the peer process: it opens the volume of spec (JSON) on
// peerCPU, says "ready", and closes it when its input ends.
func servePeer(specJSON string) {
	var spec peerSpec
	if err := json.Unmarshal([]byte(specJSON), &spec); err != nil {
		fail(fmt.Errorf("-serve-peer: %w", err))
	}
	pin(func(cpu int) bool { return cpu == peerCPU })
	var creds replication.TLS
	if spec.TLSDir != "" {
		creds = tlsFor(spec.TLSDir, "west")
	}
	v := openVolume(spec.Config, "west", prometheus.NewRegistry(), creds)
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	if err := v.Close(); err != nil {
		fail(err)
	}
}

// pin binds every thread of this process to the CPUs keep accepts; the
// threads the Go runtime starts later inherit it from the thread that
// starts them. It runs until a pass finds no thread it has not bound.
func pin(keep func(cpu int) bool) {
	var set unix.CPUSet
	n := machineCPUs()
	for cpu := 0; cpu < n; cpu++ {
		if keep(cpu) {
			set.Set(cpu)
		}
	}
	if set.Count() == 0 || peerCPU >= n {
		fail(fmt.Errorf("-peer-cpu %d: this machine has CPUs 0 to %d, and the primary needs one besides the peer's", peerCPU, n-1))
	}
	done := map[int]bool{}
	for {
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			fail(err)
		}
		fresh := false
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil || done[tid] {
				continue
			}
			if err := unix.SchedSetaffinity(tid, &set); err != nil {
				fail(fmt.Errorf("pin thread %d: %w", tid, err))
			}
			done[tid], fresh = true, true
		}
		if !fresh {
			return
		}
	}
}

// machineCPUs counts the machine's CPUs (runtime.NumCPU counts those this
// process may use, which the peer process inherits already pinned).
func machineCPUs() int {
	raw, err := os.ReadFile("/proc/stat")
	if err != nil {
		fail(err)
	}
	n := 0
	for _, line := range strings.Split(string(raw), "\n") {
		if len(line) > 3 && strings.HasPrefix(line, "cpu") && line[3] >= '0' && line[3] <= '9' {
			n++
		}
	}
	return n
}
