package replication

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/geobooth/geobooth/kit/netcap"
)

// Errors of the volume API.
var (
	ErrNotPrimary    = errors.New("volume is not primary")
	ErrNotUpToDate   = errors.New("replica is not UpToDate or Consistent: promotion refused (force to override)")
	ErrOutOfRange    = errors.New("I/O beyond the end of the volume")
	ErrClosed        = errors.New("volume closed")
	ErrPeerNotInSync = errors.New("a peer is not connected and in sync")
	// ErrRepairDirection: a repair resyncs from this side to the peer, so
	// it runs on the primary, or on either side when neither is primary.
	ErrRepairDirection = errors.New("a repair flows from the primary: run it there")
	// ErrLeaseEnded: the primary's lease (the ticket it runs under) ended;
	// it accepts no write until it is renewed or the replica demoted.
	ErrLeaseEnded = errors.New("the lease of this primary has ended: write refused")
)

// Options wire a volume.
type Options struct {
	Config VolumeConfig
	// Self is this member's name; peers know it by that name.
	Self string
	// Key is the cluster key authenticating replication connections.
	Key      []byte
	Log      *slog.Logger
	Registry prometheus.Registerer
	// Backend replaces the backing file (tests inject faults with it).
	Backend Backend
	// Events, when set, is told of what an operator must see in the
	// timeline: split brains and discarded writes.
	Events func(kind, detail string)
	// TLS, when set, makes every replication link mutual TLS between
	// members of the cluster's CA; a peer is known by the member name its
	// certificate carries, and must say that name in its hello.
	TLS TLS
}

// TLS gives the TLS configurations of a member's links.
type TLS interface {
	// Client reaches member (whose certificate must carry its name).
	Client(member string) *tls.Config
	// Server accepts connections, with this client authentication.
	Server(auth tls.ClientAuthType) *tls.Config
}

// Volume is one replica of a replicated volume.
type Volume struct {
	cfg   VolumeConfig
	self  string
	key   []byte
	tls   TLS
	log   *slog.Logger
	be    Backend
	store metaStore
	al    *activityLog
	size  atomic.Int64 // bytes: the configuration's, or more once grown online
	met   *volumeMetrics
	// buffersOut counts pooled write buffers taken and not yet returned
	// (payload.go).
	buffersOut atomic.Int64
	peers      map[string]*peer
	order      []string
	ln         net.Listener
	ctx        context.Context
	cancel     context.CancelFunc
	wg         sync.WaitGroup
	nbd        nbdExport
	created    bool
	events     func(kind, detail string)

	// fence: writes hold it for reading; Demote takes it to fence them.
	fence sync.RWMutex
	// deadline, when set, is the end of the lease the primary runs under:
	// no write is accepted from then on.
	deadline atomic.Pointer[time.Time]
	// wmu serialises the write path (local write and shipping in one
	// order), and resync reads against it.
	wmu sync.Mutex

	mu          sync.Mutex // guards the fields below
	m           *meta
	role        Role
	needNewGen  bool
	epoch       uint64
	epochBytes  int64
	epochWrites int
	closed      bool
	splitBrains int
	discarded   uint64
	// job is the running online verify, or the last one.
	job *VerifyJob
	// held is the last epoch this replica holds whole, and whose primary
	// numbered it (this site, or the primary a secondary follows).
	held heldEpoch
}

// nbdExport is the running NBD server of a primary (see nbd.go).
type nbdExport interface{ Close() error }

// newMeta is the metadata of a replica met for the first time: with
// new_replicas = sync, a file geobooth just created is blank and UpToDate
// (any first primary's data is what it holds), anything else Inconsistent
// until a full sync; with uptodate, every new replica is declared UpToDate.
func newMeta(cfg VolumeConfig, created bool) *meta {
	m := &meta{Version: 1, Volume: cfg.Name, Size: int64(cfg.Size), Bitmap: map[string]uint64{}, Disk: UpToDate, Clean: true}
	if cfg.NewReplicas == "uptodate" || cfg.NewReplicas == "sync" && created {
		m.Current, m.Blank = genesis(cfg), created
	} else {
		m.Disk = Inconsistent
	}
	return m
}

// openPeers opens the bitmap of each peer.
func (v *Volume) openPeers() error {
	for _, p := range v.cfg.Peers {
		bm, err := openBitmap(v.cfg.metaBase()+".bitmap-"+p.Name, v.blocks())
		if err != nil {
			return err
		}
		v.peers[p.Name] = newPeer(v, p, bm)
		v.order = append(v.order, p.Name)
	}
	sort.Strings(v.order)
	return nil
}

// Open opens (or creates) the local replica. It starts secondary; Start
// connects to the peers.
func Open(o Options) (*Volume, error) {
	cfg := o.Config.resolved()
	if errs := cfg.Validate(); len(errs) > 0 {
		return nil, fmt.Errorf("volume %q: %v", cfg.Name, errs[0])
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Registry == nil {
		o.Registry = prometheus.NewRegistry()
	}
	v := &Volume{cfg: cfg, self: o.Self, key: o.Key, tls: o.TLS, log: o.Log.With("volume", cfg.Name), be: o.Backend,
		store: metaStore{path: cfg.metaBase() + ".meta"}, peers: map[string]*peer{},
		role: Secondary, events: o.Events,
		// Epochs are numbered from the clock at open, so a later run of
		// the same primary numbers its epochs higher (see Freshness).
		epoch: uint64(time.Now().UnixNano())}
	if cfg.MetaDir != "" {
		if err := os.MkdirAll(cfg.MetaDir, 0o700); err != nil {
			return nil, fmt.Errorf("volume %q: metadata folder: %w", cfg.Name, err)
		}
	}
	m, existed, err := v.store.load()
	if err != nil {
		if v.be != nil {
			v.be.Close()
		}
		return nil, err
	}
	// A volume grown online (Resize) is larger than the configuration
	// says; the metadata holds its size.
	size := int64(cfg.Size)
	if existed && m.Size > size {
		o.Log.Warn("the volume was grown online: set size in the configuration to match", "volume", cfg.Name, "size", m.Size, "configured", size)
		size = m.Size
	}
	v.size.Store(size)
	if v.be == nil {
		fb, created, err := openFile(cfg.Path, size)
		if err != nil {
			return nil, err
		}
		v.be, v.created = fb, created
	}
	if !existed {
		m = newMeta(cfg, v.created)
	}
	if m.Size != size || m.Volume != cfg.Name {
		v.be.Close()
		return nil, fmt.Errorf("volume %q: metadata is for volume %q of %d bytes", cfg.Name, m.Volume, m.Size)
	}
	v.m = m
	exts, alErr, err := v.openLog(size)
	if err != nil {
		v.be.Close()
		return nil, err
	}
	if err := v.openPeers(); err != nil {
		v.be.Close()
		return nil, err
	}
	v.met = newVolumeMetrics(o.Registry, v)
	if !m.Clean {
		v.recoverFromCrash(exts, alErr)
	}
	m.Clean = false
	m.Primary = false
	if err := v.store.save(m); err != nil {
		v.closeFiles()
		return nil, err
	}
	if err := v.al.reset(); err != nil {
		v.closeFiles()
		return nil, fmt.Errorf("volume %q: activity log: %w", cfg.Name, err)
	}
	return v, nil
}

// recoverFromCrash: the replica was not closed cleanly. A primary's hot
// extents may hold writes no peer acknowledged: count them as dirty for
// every peer (DRBD's activity-log resync). A secondary may have been
// applying an epoch: its data is no longer known to be the newest.
func (v *Volume) recoverFromCrash(exts []uint32, alErr error) {
	if v.m.Primary {
		v.m.CrashedPrimary = true
		if alErr != nil {
			v.log.Error("activity log unreadable after a crash: every block counts as dirty", "err", alErr)
			for _, p := range v.peers {
				p.bm.setRange(0, v.blocks()-1)
			}
		}
		for _, e := range exts {
			first := int64(e) << extentShift / BlockSize
			last := min(first+extentSize/BlockSize, v.blocks()) - 1
			for _, p := range v.peers {
				p.bm.setRange(first, last)
			}
		}
		v.log.Warn("replica was primary and crashed: its hot extents will be resynced", "extents", len(exts))
	} else if v.m.Disk == UpToDate {
		v.m.Disk = Consistent
	}
	for _, p := range v.peers {
		if err := p.bm.flush(); err != nil {
			v.log.Error("flush bitmap after crash", "peer", p.name, "err", err)
		}
	}
}

// Start listens for and connects to the peers; it returns at once.
func (v *Volume) Start(ctx context.Context) error {
	ln, err := net.Listen("tcp", v.cfg.Listen)
	if err != nil {
		return fmt.Errorf("volume %q: listen for replication: %w", v.cfg.Name, err)
	}
	// Each peer keeps one link; a few more cover reconnections still
	// being torn down. Connections beyond are closed at accept.
	v.ln = netcap.New(ln, 4*len(v.peers)+4, v.met.connRefused.Inc)
	v.ctx, v.cancel = context.WithCancel(ctx)
	v.wg.Add(1)
	go v.acceptLoop()
	for _, name := range v.order {
		p := v.peers[name]
		if v.self < p.name {
			v.wg.Add(1)
			go p.dialLoop()
		}
	}
	return nil
}

// Close stops replication, records what peers have not acknowledged in
// their bitmaps, and marks the replica cleanly closed.
func (v *Volume) Close() error {
	v.mu.Lock()
	if v.closed {
		v.mu.Unlock()
		return nil
	}
	v.closed = true
	v.mu.Unlock()
	v.stopNBD()
	v.fence.Lock()
	v.mu.Lock()
	v.role = Secondary
	v.mu.Unlock()
	v.fence.Unlock()
	if v.cancel != nil {
		v.cancel()
	}
	if v.ln != nil {
		v.ln.Close()
	}
	for _, p := range v.peers {
		p.disconnect(ErrClosed)
	}
	v.wg.Wait()
	var errs []error
	if err := v.be.Sync(); err != nil {
		errs = append(errs, err)
	}
	for _, p := range v.peers {
		if err := p.bm.flush(); err != nil {
			errs = append(errs, err)
		}
	}
	v.mu.Lock()
	v.m.Clean, v.m.Primary = true, false
	err := v.store.save(v.m)
	v.mu.Unlock()
	if err != nil {
		errs = append(errs, err)
	}
	if err := v.al.reset(); err != nil {
		errs = append(errs, err)
	}
	if err := v.closeFiles(); err != nil {
		errs = append(errs, err)
	}
	v.met.unregister()
	return errors.Join(errs...)
}

func (v *Volume) closeFiles() error {
	var errs []error
	for _, p := range v.peers {
		if err := p.bm.close(); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, v.al.close(), v.be.Close())
	return errors.Join(errs...)
}

// Name returns the volume's name.
func (v *Volume) Name() string { return v.cfg.Name }

// Size returns the volume's size in bytes.
func (v *Volume) Size() int64 { return v.size.Load() }

// blocks is the volume's size in blocks.
func (v *Volume) blocks() int64 { return v.size.Load() / BlockSize }

// Role returns the current role.
func (v *Volume) Role() Role {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.role
}

// Disk returns the local disk state.
func (v *Volume) Disk() DiskState {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.m.Disk
}

// setDisk records a new disk state durably.
func (v *Volume) setDisk(d DiskState) {
	v.mu.Lock()
	from := v.m.Disk
	if from == d {
		v.mu.Unlock()
		return
	}
	v.log.Info("disk state", "from", from, "to", d)
	v.m.Disk = d
	if err := v.store.save(v.m); err != nil {
		v.log.Error("save disk state", "err", err)
	}
	v.mu.Unlock()
	v.event("disk state", "volume %s: disk %s → %s", v.cfg.Name, from, d)
}

// Promote makes the replica primary. It is refused unless the data is
// UpToDate or Consistent, or force is set (the operator's responsibility).
// The NBD export starts.
func (v *Volume) Promote(ctx context.Context, force bool) error {
	v.fence.Lock()
	defer v.fence.Unlock()
	v.mu.Lock()
	if v.closed {
		v.mu.Unlock()
		return ErrClosed
	}
	if v.role == Primary {
		v.mu.Unlock()
		return v.startNBD()
	}
	if d := v.m.Disk; d != UpToDate && d != Consistent && !force {
		v.mu.Unlock()
		return fmt.Errorf("%w (disk %s)", ErrNotUpToDate, d)
	}
	for _, p := range v.peers {
		if p.remotePrimary() {
			v.mu.Unlock()
			return fmt.Errorf("peer %s is primary: demote it first", p.name)
		}
	}
	// The first primary of replicas that were never synced: its data
	// becomes the volume's, in a generation of its own, and every peer
	// takes a full sync from it.
	first := v.m.Current == 0
	if first {
		v.m.Current = newGeneration()
	}
	src, others := v.m.Source, []string(nil)
	if src != "" {
		for _, name := range v.order {
			if name != src {
				others = append(others, name)
			}
		}
	}
	v.m.Source = ""
	v.role = Primary
	v.m.Primary = true
	v.m.PrimarySince = time.Now().UnixNano()
	v.m.Disk = UpToDate
	// A promotion with a peer away starts a new generation at the first
	// write, so the peer's copy can be told apart when it comes back.
	v.needNewGen = false
	for _, p := range v.peers {
		if !p.inSync() {
			v.needNewGen = true
		}
	}
	err := v.store.save(v.m)
	v.mu.Unlock()
	if err != nil {
		return err
	}
	v.log.Info("promoted", "force", force)
	v.event("promoted", "volume %s is primary here (force %v)", v.cfg.Name, force)
	v.reconcile(src, others)
	if first {
		// A peer connected as new learns of the generation at a new
		// handshake, which starts its full sync; writes wait (the
		// fence) until its link is down, so none is taken for synced.
		v.log.Info("initial sync: this replica is the first primary; the new peers take a full sync from it")
		for _, p := range v.peers {
			p.disconnect(errInitialSync)
		}
	}
	v.announceRole(Primary)
	return v.startNBD()
}

// noteSource records the primary this secondary applies writes from (once
// per change).
func (v *Volume) noteSource(name string) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.m.Source == name && !v.m.Blank {
		return nil
	}
	v.m.Source, v.m.Blank = name, false
	if err := v.store.save(v.m); err != nil {
		return fmt.Errorf("record the primary %s: %w", name, err)
	}
	return nil
}

// reconcile, at a promotion, marks every block for the secondaries that
// followed the same primary src as this replica (names): they may hold
// more or less of its last writes. A connected one is resynced at once;
// one away, when it is back (its bitmap then covers the volume).
func (v *Volume) reconcile(src string, names []string) {
	for _, name := range names {
		p := v.peers[name]
		p.bm.setRange(0, v.blocks()-1)
		if err := p.bm.flush(); err != nil {
			v.log.Error("save the bitmap of a secondary to reconcile", "peer", name, "err", err)
		}
		p.mu.Lock()
		gen, ok := p.connGen, p.state == InSync
		if ok {
			p.state = SyncSource
		}
		p.mu.Unlock()
		v.log.Warn("reconciling a secondary of the lost primary: it may hold more or less of its last writes than this replica",
			"peer", name, "primary_before", src, "now", ok)
		if ok {
			p.startResync(gen)
		}
	}
}

// Demote makes the replica secondary at once: the NBD export stops, and
// writes in flight or to come fail with ErrNotPrimary.
func (v *Volume) Demote(ctx context.Context) error {
	v.stopNBD()
	v.fence.Lock()
	defer v.fence.Unlock()
	return v.demoteLocked()
}

// demoteLocked makes a primary secondary (the fence held).
func (v *Volume) demoteLocked() error {
	v.mu.Lock()
	if v.role != Primary {
		v.mu.Unlock()
		return nil
	}
	v.role = Secondary
	v.deadline.Store(nil)
	err := v.be.Sync()
	v.closeEpochLocked()
	v.m.Primary = false
	if serr := v.store.save(v.m); err == nil {
		err = serr
	}
	v.log.Info("demoted")
	v.announceRole(Secondary)
	v.mu.Unlock()
	v.event("demoted", "volume %s is secondary here", v.cfg.Name)
	return err
}

// Handover ends this primary's role for a planned move without losing a
// write: new writes wait, everything written is flushed and acknowledged
// by every peer, then the replica becomes secondary (the waiting writes
// fail with ErrNotPrimary and the export stops). If a peer does not get in
// sync and drained before ctx ends, the replica stays primary and the
// waiting writes go on: the move aborts and nothing is lost.
func (v *Volume) Handover(ctx context.Context) error {
	v.fence.Lock()
	if v.Role() != Primary {
		v.fence.Unlock()
		return nil
	}
	v.wmu.Lock()
	err := v.syncAndClose()
	v.wmu.Unlock()
	for _, name := range v.order {
		if err != nil {
			break
		}
		if derr := v.peers[name].waitDrained(ctx); derr != nil {
			err = fmt.Errorf("drain to %s: %w", name, derr)
		}
	}
	if err == nil {
		err = v.demoteLocked()
	}
	v.fence.Unlock()
	if err != nil {
		return err
	}
	v.stopNBD()
	v.log.Info("handed over: every peer acknowledged every write")
	return nil
}

// event tells the Events hook, when there is one.
func (v *Volume) event(kind, format string, args ...any) {
	if v.events != nil {
		v.events(kind, fmt.Sprintf(format, args...))
	}
}

// SetWriteDeadline bounds the writes a primary accepts to the lease it
// holds: from t on, every write fails with ErrLeaseEnded (a primary without
// a valid lease never accepts a write), until a renewal moves t. The zero
// time removes the bound (a manual ticket has no lease). Demote clears it.
func (v *Volume) SetWriteDeadline(t time.Time) {
	if t.IsZero() {
		v.deadline.Store(nil)
		return
	}
	v.deadline.Store(&t)
}

// leaseEnded reports whether the write deadline has passed.
func (v *Volume) leaseEnded() bool {
	d := v.deadline.Load()
	return d != nil && !time.Now().Before(*d)
}

// Drain flushes and waits until every peer acknowledged every epoch (a
// planned move), through a peer's catch-up or reconnection, until ctx
// ends; a refused or split-brain peer fails it at once.
func (v *Volume) Drain(ctx context.Context) error {
	if err := v.Flush(); err != nil {
		return err
	}
	for _, name := range v.order {
		if err := v.peers[name].waitDrained(ctx); err != nil {
			return fmt.Errorf("drain to %s: %w", name, err)
		}
	}
	return nil
}
