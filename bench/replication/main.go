// Command replication measures the replication engine against the disk it
// runs on, in one run: raw sequential write throughput to a file, the
// same writes through a primary volume with one asynchronous peer on
// loopback (same disk), the ratio, and the replication lag (p50/p99, from
// each epoch's first write to the peer's durable acknowledgement) at a
// steady rate of half the raw throughput. It prints one table.
//
//	go run ./bench/replication [-size 512MiB] [-runs 3] [-dir DIR]
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"path/filepath"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/geobooth/geobooth/internal/tlsfiles"
	"github.com/geobooth/geobooth/replication"
)

func main() {
	sizeFlag := flag.String("size", "512MiB", "bytes written per throughput run")
	runs := flag.Int("runs", 3, "runs per measurement (the median is reported)")
	dir := flag.String("dir", "", "folder on the disk to measure (default: a temporary folder)")
	lagFor := flag.Duration("lag-for", 5*time.Second, "how long the steady-rate lag run lasts")
	flag.Parse()
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
	chunk := make([]byte, 1<<20)
	for i := range chunk {
		chunk[i] = byte(i*7 + i>>11)
	}

	creds := makeTLS(*dir)
	var raw, vol, volTLS []float64
	for r := 0; r < *runs; r++ {
		raw = append(raw, rawRun(*dir, size, chunk))
		vol = append(vol, volumeRun(*dir, size, chunk, nil))
		volTLS = append(volTLS, volumeRun(*dir, size, chunk, creds))
	}
	rawMB, volMB, tlsMB := median(raw), median(vol), median(volTLS)
	p50, p99, achieved := lagRun(*dir, rawMB/2, *lagFor, chunk)

	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "measure\tvalue\t\n")
	fmt.Fprintf(tw, "raw sequential write to a file (1 MiB writes, fdatasync at end)\t%.0f MB/s\t\n", rawMB)
	fmt.Fprintf(tw, "through the volume, one async peer on loopback (flush at end)\t%.0f MB/s\t\n", volMB)
	fmt.Fprintf(tw, "ratio volume / raw (target >= 0.90)\t%.2f\t\n", volMB/rawMB)
	fmt.Fprintf(tw, "through the volume, the peer over mutual TLS 1.3\t%.0f MB/s\t\n", tlsMB)
	fmt.Fprintf(tw, "ratio volume with TLS / raw\t%.2f\t\n", tlsMB/rawMB)
	fmt.Fprintf(tw, "steady rate for the lag run (half of raw)\t%.0f MB/s\t\n", achieved)
	fmt.Fprintf(tw, "replication lag p50\t%.1f ms\t\n", p50*1000)
	fmt.Fprintf(tw, "replication lag p99 (target < 100 ms)\t%.1f ms\t\n", p99*1000)
	tw.Flush()
	fmt.Printf("(%d interleaved runs of %s each, medians; raw %v, volume %v, with TLS %v)\n", *runs, *sizeFlag, round(raw), round(vol), round(volTLS))
}

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

// rawRun writes size bytes to a new file and syncs it.
func rawRun(dir string, size int64, chunk []byte) float64 {
	path := filepath.Join(dir, "raw.img")
	os.Remove(path)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		fail(err)
	}
	defer os.Remove(path)
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
	f.Close()
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

// makeTLS makes a CA and the certificates of east and west in dir/tls.
func makeTLS(dir string) map[string]replication.TLS {
	tdir := filepath.Join(dir, "tls")
	os.MkdirAll(tdir, 0o700)
	ca, err := tlsfiles.NewCA("bench", time.Now(), 24*time.Hour)
	if err != nil {
		fail(err)
	}
	if err := os.WriteFile(filepath.Join(tdir, "ca.pem"), ca.Cert, 0o644); err != nil {
		fail(err)
	}
	out := map[string]replication.TLS{}
	for _, name := range []string{"east", "west"} {
		m, err := tlsfiles.NewMember(ca, name, nil, time.Now(), 24*time.Hour)
		if err != nil {
			fail(err)
		}
		cert, key := filepath.Join(tdir, name+".pem"), filepath.Join(tdir, name+"-key.pem")
		if err := m.Write(cert, key); err != nil {
			fail(err)
		}
		src, err := tlsfiles.Open(tlsfiles.Files{CA: filepath.Join(tdir, "ca.pem"), Cert: cert, Key: key})
		if err != nil {
			fail(err)
		}
		out[name] = src
	}
	return out
}

// pair opens a primary (east) and a secondary (west) in sync, over TLS
// with creds.
func pair(dir string, size int64, reg prometheus.Registerer, creds map[string]replication.TLS) (*replication.Volume, *replication.Volume) {
	os.RemoveAll(filepath.Join(dir, "vol"))
	ea, wa := freeAddr(), freeAddr()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	open := func(name, addr, peer, peerAddr string, reg prometheus.Registerer) *replication.Volume {
		c := replication.DefaultVolume()
		c.Name, c.Size, c.Listen = "bench", replication.Size(size), addr
		c.Path = filepath.Join(dir, "vol", name, "bench.img")
		c.Peers = []replication.PeerConfig{{Name: peer, Address: peerAddr}}
		c.SendBuffer = 256 << 20
		os.MkdirAll(filepath.Dir(c.Path), 0o755)
		v, err := replication.Open(replication.Options{Config: c, Self: name, Key: []byte("bench-key-0123456"), Log: log, Registry: reg,
			TLS: creds[name]})
		if err != nil {
			fail(err)
		}
		if err := v.Start(context.Background()); err != nil {
			fail(err)
		}
		return v
	}
	east := open("east", ea, "west", wa, reg)
	west := open("west", wa, "east", ea, prometheus.NewRegistry())
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

// volumeRun writes size bytes through a primary volume and flushes.
func volumeRun(dir string, size int64, chunk []byte, creds map[string]replication.TLS) float64 {
	east, west := pair(dir, size, prometheus.NewRegistry(), creds)
	defer west.Close()
	defer east.Close()
	start := time.Now()
	for off := int64(0); off < size; off += int64(len(chunk)) {
		if err := east.WriteAt(chunk, off, false); err != nil {
			fail(err)
		}
	}
	if err := east.Flush(); err != nil {
		fail(err)
	}
	took := time.Since(start)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := east.Drain(ctx); err != nil {
		fail(fmt.Errorf("drain after the throughput run: %w", err))
	}
	return float64(size) / took.Seconds() / 1e6
}

// lagRun writes at rate MB/s (1 MiB writes, a flush every 4 MiB) for d and
// returns the p50 and p99 of the per-epoch acknowledgement lag, and the
// rate achieved.
func lagRun(dir string, rate float64, d time.Duration, chunk []byte) (float64, float64, float64) {
	const volSize = 1 << 30
	reg := prometheus.NewRegistry()
	east, west := pair(dir, volSize, reg, nil)
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
