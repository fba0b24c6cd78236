package replication

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/geobooth/geobooth/kit/confkit"
	"github.com/geobooth/geobooth/kit/testenv"
)

var testKey = []byte("replication-test-key")

func freeAddr(t testing.TB) string {
	t.Helper()
	return fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
}

// pair describes two replicas east and west of one volume.
type pair struct {
	t          testing.TB
	dir        string
	size       int64
	addr       map[string]string
	via        map[string]string // address each side dials the other at (a proxy)
	vols       map[string]*Volume
	cfgs       map[string]VolumeConfig
	backendFor map[string]func(path string, size int64) Backend
	tls        map[string]TLS
}

func newPair(t testing.TB, size int64, tweak func(*VolumeConfig)) *pair {
	p := &pair{t: t, dir: t.TempDir(), size: size, addr: map[string]string{}, via: map[string]string{},
		vols: map[string]*Volume{}, cfgs: map[string]VolumeConfig{}, backendFor: map[string]func(string, int64) Backend{},
		tls: map[string]TLS{}}
	for _, n := range []string{"east", "west"} {
		p.addr[n] = freeAddr(t)
	}
	for _, n := range []string{"east", "west"} {
		other := "west"
		if n == "west" {
			other = "east"
		}
		c := DefaultVolume()
		c.Name, c.Size, c.Path, c.Listen = "data", Size(size), filepath.Join(p.dir, n, "data.img"), p.addr[n]
		c.Peers = []PeerConfig{{Name: other, Address: p.addr[other]}}
		c.PingInterval, c.Timeout = confkit.Duration(100*time.Millisecond), confkit.Duration(time.Second)
		if tweak != nil {
			tweak(&c)
		}
		os.MkdirAll(filepath.Dir(c.Path), 0o755)
		p.cfgs[n] = c
	}
	t.Cleanup(func() {
		for _, v := range p.vols {
			v.Close()
		}
	})
	return p
}

func quietLog() *slog.Logger {
	if os.Getenv("GEOBOOTH_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// open opens and starts one side.
func (p *pair) open(name string) *Volume {
	p.t.Helper()
	c := p.cfgs[name]
	for i := range c.Peers {
		if a, ok := p.via[c.Peers[i].Name]; ok {
			c.Peers[i].Address = a
		}
	}
	o := Options{Config: c, Self: name, Key: testKey, Log: quietLog().With("member", name), TLS: p.tls[name]}
	if f := p.backendFor[name]; f != nil {
		o.Backend = f(c.Path, p.size)
	}
	v, err := Open(o)
	if err != nil {
		p.t.Fatal(err)
	}
	if err := v.Start(context.Background()); err != nil {
		p.t.Fatal(err)
	}
	p.vols[name] = v
	return v
}

func (p *pair) close(name string) {
	if v := p.vols[name]; v != nil {
		if err := v.Close(); err != nil {
			p.t.Errorf("close %s: %v", name, err)
		}
		delete(p.vols, name)
	}
}

func (p *pair) waitState(name string, states ...PeerState) {
	p.t.Helper()
	v := p.vols[name]
	other := "west"
	if name == "west" {
		other = "east"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := v.peers[other].waitState(ctx, states...); err != nil {
		p.t.Fatalf("%s: %v (status %+v)", name, err, v.Status())
	}
}

// file reads a side's backing file.
func (p *pair) file(name string) []byte {
	p.t.Helper()
	b, err := os.ReadFile(p.cfgs[name].Path)
	if err != nil {
		p.t.Fatal(err)
	}
	return b
}

func (p *pair) assertEqual() {
	p.t.Helper()
	a, b := p.file("east"), p.file("west")
	if !bytes.Equal(a, b) {
		for i := range a {
			if a[i] != b[i] {
				p.t.Fatalf("replicas differ from byte %d (block %d)", i, i/BlockSize)
			}
		}
	}
}

func eventually(t testing.TB, d time.Duration, f func() error) {
	t.Helper()
	testenv.Eventually(t, d, f)
}

func randomData(seed int64, n int) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	return b
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func testCounter(c prometheus.Collector) float64 { return testutil.ToFloat64(c) }
