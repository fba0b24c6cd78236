// Command replication measures the replication engine against the disk it
// runs on, in one run: raw sequential write throughput to a file (or, with
// -devices, a loop device), the same writes through a primary volume with
// one asynchronous peer on loopback (same disk), the ratio, the
// replication lag (p50/p99, from each epoch's first write to the peer's
// durable acknowledgement) at a steady rate of half the raw throughput, and
// protocol C's latency for one 4 KiB write against the physical bound (a
// raw 4 KiB write and fdatasync, plus a loopback round trip). Rounds are
// interleaved and medians reported. It prints one table. With -peer-cpu N
// the peer runs in a process of its own on CPU N and the rest on the
// other CPUs: on one machine, the nearest to a peer on its own.
//
//	go run ./bench/replication [-size 512MiB] [-runs 5] [-dir DIR] [-devices] [-peer-dir DIR] [-peer-cpu N]
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"path/filepath"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/geobooth/geobooth/kit/tlsfiles"
	"github.com/geobooth/geobooth/replication"
)

func main() {
	sizeFlag := flag.String("size", "512MiB", "bytes written per throughput run")
	runs := flag.Int("runs", 5, "interleaved rounds per measurement (the median is reported)")
	devices := flag.Bool("devices", false, "measure on loop devices (root; losetup) instead of files")
	flag.StringVar(&onCongestion, "on-congestion", "pull-ahead", "the volumes' on_congestion: pull-ahead or block")
	dir := flag.String("dir", "", "folder on the disk to measure (default: a temporary folder)")
	peerDir := flag.String("peer-dir", "", "folder for the peer's replica, on another disk (or /dev/shm: RAM), so that the primary's disk is the only one measured (default: -dir, both replicas on one disk)")
	lagFor := flag.Duration("lag-for", 5*time.Second, "how long the steady-rate lag run lasts")
	flag.IntVar(&peerCPU, "peer-cpu", -1, "run the peer in a process of its own on this CPU, and the rest on the others (as when each site has its own machine)")
	serve := flag.String("serve-peer", "", "(internal) be the peer process of -peer-cpu")
	flag.Parse()
	if *serve != "" {
		servePeer(*serve)
		return
	}
	if peerCPU >= 0 {
		pin(func(cpu int) bool { return cpu != peerCPU })
	}
	size, err := replication.ParseSize(*sizeFlag)
	if err != nil {
		fail(err)
	}
	if *dir == "" {
		d, err := os.MkdirTemp("", "geobooth-bench-")
		if err != nil {
			fail(err)
		}
		defer os.RemoveAll(d)
		*dir = d
	}
	chunk := aligned(1 << 20)
	for i := range chunk {
		chunk[i] = byte(i*7 + i>>11)
	}

	st := storage{dir: *dir, peerDir: *peerDir}
	if *devices {
		st = newLoopStorage(st, max(size, lagVolume))
		defer st.close()
	}
	tlsDir := makeTLS(*dir)
	var raw, local, vol, volTLS, cLat, bound, busy, iowait []float64
	for r := 0; r < *runs; r++ {
		raw = append(raw, rawRun(st, size, chunk))
		local = append(local, localRun(st, size, chunk))
		mbps, cpu := volumeRun(st, size, chunk, "")
		vol, busy, iowait = append(vol, mbps), append(busy, cpu.busy), append(iowait, cpu.iowait)
		mbps, _ = volumeRun(st, size, chunk, tlsDir)
		volTLS = append(volTLS, mbps)
		cLat = append(cLat, protocolCRun(st))
		bound = append(bound, rawSyncLatency(st)+loopbackRTT())
	}
	rawMB, volMB, tlsMB := median(raw), median(vol), median(volTLS)
	p50, p99, achieved := lagRun(st, rawMB/2, *lagFor, chunk)

	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "measure\tvalue\t\n")
	fmt.Fprintf(tw, "raw sequential write to the %s (1 MiB writes, fdatasync at end)\t%.0f MB/s\t\n", st.rawKind(), rawMB)
	fmt.Fprintf(tw, "through the volume, its peer away (the local path alone)\t%.0f MB/s\t\n", median(local))
	fmt.Fprintf(tw, "ratio local path / raw\t%.2f\t\n", median(local)/rawMB)
	fmt.Fprintf(tw, "through the volume, one async peer on loopback (flush at end)\t%.0f MB/s\t\n", volMB)
	fmt.Fprintf(tw, "ratio volume / raw (target >= 0.90)\t%.2f\t\n", volMB/rawMB)
	if st.peerDir == "" {
		fmt.Fprintf(tw, "ratio volume / (raw / 2): both replicas write to this one disk\t%.2f\t\n", volMB/(rawMB/2))
	}
	where := "the peer's work included"
	if peerCPU >= 0 {
		where = fmt.Sprintf("the peer alone on CPU %d", peerCPU)
	}
	fmt.Fprintf(tw, "this machine's CPUs during the volume run: busy / waiting for I/O (%d CPUs, %s)\t%.0f%% / %.0f%%\t\n", machineCPUs(), where, median(busy)*100, median(iowait)*100)
	fmt.Fprintf(tw, "through the volume, the peer over mutual TLS 1.3\t%.0f MB/s\t\n", tlsMB)
	fmt.Fprintf(tw, "ratio volume with TLS / raw\t%.2f\t\n", tlsMB/rawMB)
	fmt.Fprintf(tw, "steady rate for the lag run (half of raw)\t%.0f MB/s\t\n", achieved)
	fmt.Fprintf(tw, "replication lag p50\t%.1f ms\t\n", p50*1000)
	fmt.Fprintf(tw, "replication lag p99 (target < 100 ms)\t%.1f ms\t\n", p99*1000)
	fmt.Fprintf(tw, "protocol C: one 4 KiB write, median\t%.2f ms\t\n", median(cLat)*1000)
	fmt.Fprintf(tw, "bound: raw 4 KiB write + fdatasync, plus a loopback round trip\t%.2f ms\t\n", median(bound)*1000)
	fmt.Fprintf(tw, "ratio protocol C / bound\t%.2f\t\n", median(cLat)/median(bound))
	tw.Flush()
	peer := "the same disk"
	if st.peerDir != "" {
		peer = st.peerDir
	}
	fmt.Printf("(%d interleaved rounds of %s each on %s, the peer's replica on %s, on_congestion %s, medians; raw %v, volume %v, with TLS %v MB/s)\n", *runs, *sizeFlag, st.kind(), peer, onCongestion, round(raw), round(vol), round(volTLS))
}

// onCongestion is the volumes' on_congestion (-on-congestion).
var onCongestion string

func fail(err error) {
	fmt.Fprintln(os.Stderr, "bench/replication:", err)
	os.Exit(1)
}

func round(xs []float64) []int {
	out := make([]int, len(xs))
	for i, x := range xs {
		out[i] = int(math.Round(x))
	}
	return out
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[len(s)/2]
}

// rawRun writes size bytes to a new file (or the raw device) and syncs
// it.
func rawRun(st storage, size int64, chunk []byte) float64 {
	f := st.raw()
	defer st.doneRaw(f)
	start := time.Now()
	for off := int64(0); off < size; off += int64(len(chunk)) {
		if _, err := f.WriteAt(chunk, off); err != nil {
			fail(err)
		}
	}
	if err := f.Sync(); err != nil {
		fail(err)
	}
	took := time.Since(start)
	return float64(size) / took.Seconds() / 1e6
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fail(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// makeTLS makes a CA and the certificates of east and west in dir/tls,
// and returns that folder.
func makeTLS(dir string) string {
	tdir := filepath.Join(dir, "tls")
	os.MkdirAll(tdir, 0o700)
	ca, err := tlsfiles.NewCA("bench", time.Now(), 24*time.Hour)
	if err != nil {
		fail(err)
	}
	if err := os.WriteFile(filepath.Join(tdir, "ca.pem"), ca.Cert, 0o644); err != nil {
		fail(err)
	}
	for _, name := range []string{"east", "west"} {
		m, err := tlsfiles.NewMember(ca, name, nil, time.Now(), 24*time.Hour)
		if err != nil {
			fail(err)
		}
		if err := m.Write(filepath.Join(tdir, name+".pem"), filepath.Join(tdir, name+"-key.pem")); err != nil {
			fail(err)
		}
	}
	return tdir
}

// pair opens a primary (east) and a secondary (west) in sync, over TLS
// with the certificates in tlsDir when it is not empty; west runs in a
// process of its own with -peer-cpu.
func pair(st storage, size int64, reg prometheus.Registerer, tlsDir string, protocol string) (*replication.Volume, io.Closer) {
	dir := st.dir
	os.RemoveAll(filepath.Join(dir, "vol"))
	os.RemoveAll(filepath.Join(st.dirOf("west"), "vol"))
	ea, wa := freeAddr(), freeAddr()
	config := func(name, addr, peer, peerAddr string) replication.VolumeConfig {
		c := replication.DefaultVolume()
		c.Name, c.Size, c.Listen = "bench", replication.Size(size), addr
		c.Path = filepath.Join(st.dirOf(name), "vol", name, "bench.img")
		if dev := st.devs[name]; dev != "" {
			// Its metadata is new each run: the devices hold the last
			// run's bytes, which the bench does not read.
			c.Path, c.MetaDir, c.NewReplicas = dev, filepath.Join(dir, "vol", name), "uptodate"
		}
		c.Peers = []replication.PeerConfig{{Name: peer, Address: peerAddr}}
		c.SendBuffer = 256 << 20
		c.Protocol, c.OnCongestion = protocol, onCongestion
		os.MkdirAll(filepath.Dir(c.Path), 0o755)
		return c
	}
	var creds replication.TLS
	if tlsDir != "" {
		creds = tlsFor(tlsDir, "east")
	}
	east := openVolume(config("east", ea, "west", wa), "east", reg, creds)
	var west io.Closer
	wc := config("west", wa, "east", ea)
	if peerCPU >= 0 {
		west = startPeer(peerSpec{Config: wc, TLSDir: tlsDir})
	} else {
		var wcreds replication.TLS
		if tlsDir != "" {
			wcreds = tlsFor(tlsDir, "west")
		}
		west = openVolume(wc, "west", prometheus.NewRegistry(), wcreds)
	}
	deadline := time.Now().Add(10 * time.Second)
	for east.Status().Peers[0].State != replication.InSync {
		if time.Now().After(deadline) {
			fail(fmt.Errorf("replicas did not connect: %+v", east.Status()))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := east.Promote(context.Background(), false); err != nil {
		fail(err)
	}
	return east, west
}

// localRun writes size bytes through a primary volume whose peer is away
// (its writes only marked in the peer's bitmap) and flushes: the local
// path alone (activity log, direct writes), without the shipping and the
// peer that share this machine's CPUs in volumeRun.
func localRun(st storage, size int64, chunk []byte) float64 {
	east, west := pair(st, size, prometheus.NewRegistry(), "", "A")
	defer east.Close()
	west.Close()
	deadline := time.Now().Add(10 * time.Second)
	for east.Status().Peers[0].State == replication.InSync {
		if time.Now().After(deadline) {
			fail(fmt.Errorf("the peer did not go away: %+v", east.Status()))
		}
		time.Sleep(10 * time.Millisecond)
	}
	return float64(size) / writeAll(east, size, chunk).Seconds() / 1e6
}

// writeAll writes size bytes through the primary v in chunks, flushes,
// and returns how long that took.
func writeAll(v *replication.Volume, size int64, chunk []byte) time.Duration {
	start := time.Now()
	for off := int64(0); off < size; off += int64(len(chunk)) {
		if err := v.WriteAt(chunk, off, false); err != nil {
			fail(err)
		}
	}
	if err := v.Flush(); err != nil {
		fail(err)
	}
	return time.Since(start)
}

// volumeRun writes size bytes through a primary volume and flushes; it
// returns the throughput and how busy this machine's CPUs were meanwhile.
func volumeRun(st storage, size int64, chunk []byte, tlsDir string) (float64, cpuShare) {
	east, west := pair(st, size, prometheus.NewRegistry(), tlsDir, "A")
	defer west.Close()
	defer east.Close()
	before := readCPU()
	took := writeAll(east, size, chunk)
	cpu := readCPU().since(before)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := east.Drain(ctx); err != nil {
		fail(fmt.Errorf("drain after the throughput run: %w", err))
	}
	return float64(size) / took.Seconds() / 1e6, cpu
}

// lagRun writes at rate MB/s (1 MiB writes, a flush every 4 MiB) for d and
// returns the p50 and p99 of the per-epoch acknowledgement lag, and the
// rate achieved.
func lagRun(st storage, rate float64, d time.Duration, chunk []byte) (float64, float64, float64) {
	const volSize = lagVolume
	reg := prometheus.NewRegistry()
	east, west := pair(st, volSize, reg, "", "A")
	defer west.Close()
	defer east.Close()
	interval := time.Duration(float64(len(chunk)) / (rate * 1e6) * float64(time.Second))
	start := time.Now()
	next := start
	written := int64(0)
	for i := 0; time.Since(start) < d; i++ {
		off := (int64(i) * int64(len(chunk))) % volSize
		if err := east.WriteAt(chunk, off, false); err != nil {
			fail(err)
		}
		written += int64(len(chunk))
		if i%4 == 3 {
			if err := east.Flush(); err != nil {
				fail(err)
			}
		}
		next = next.Add(interval)
		time.Sleep(time.Until(next))
	}
	achieved := float64(written) / time.Since(start).Seconds() / 1e6
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	east.Flush()
	east.Drain(ctx)
	mfs, err := reg.Gather()
	if err != nil {
		fail(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "geobooth_replication_ack_seconds" {
			h := mf.GetMetric()[0].GetHistogram()
			return quantile(h, 0.5), quantile(h, 0.99), achieved
		}
	}
	fail(fmt.Errorf("no ack latency histogram"))
	return 0, 0, 0
}

// quantile estimates a quantile from histogram buckets (linear inside the
// bucket).
func quantile(h *dto.Histogram, q float64) float64 {
	total := float64(h.GetSampleCount())
	if total == 0 {
		return math.NaN()
	}
	want := q * total
	prevBound, prevCount := 0.0, 0.0
	for _, b := range h.GetBucket() {
		c := float64(b.GetCumulativeCount())
		if c >= want {
			if c == prevCount {
				return b.GetUpperBound()
			}
			return prevBound + (b.GetUpperBound()-prevBound)*(want-prevCount)/(c-prevCount)
		}
		prevBound, prevCount = b.GetUpperBound(), c
	}
	return prevBound
}
