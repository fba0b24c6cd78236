package replication

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"os"

	"github.com/geobooth/geobooth/api"
	"github.com/geobooth/geobooth/kit/durable"
)

// Role is a volume's role: only the primary accepts writes.
type Role = api.Role

// Roles.
const (
	Primary   Role = "primary"
	Secondary Role = "secondary"
)

// DiskState is how good a replica's data is, as DRBD tracks it.
type DiskState = api.DiskState

// Disk states.
const (
	// UpToDate: the newest data (the primary, or a secondary in sync).
	UpToDate DiskState = "UpToDate"
	// Consistent: a crash-consistent state; whether it is the newest is
	// not known (a secondary that lost its primary).
	Consistent DiskState = "Consistent"
	// Outdated: consistent but known to be older than a peer's.
	Outdated DiskState = "Outdated"
	// Inconsistent: being resynced (or partly applied); not usable.
	Inconsistent DiskState = "Inconsistent"
)

// historySize bounds the generation history.
const historySize = 16

// meta is a volume's durable metadata: generation identifiers (DRBD's
// UUIDs), disk state, and whether it was primary and closed cleanly.
type meta struct {
	Version int    `json:"version"`
	Volume  string `json:"volume"`
	Size    int64  `json:"size"`
	// Current identifies the data generation; History its ancestors.
	Current uint64   `json:"current"`
	History []uint64 `json:"history"`
	// Bitmap, per peer, is the generation that peer's bitmap tracks from
	// (0: in sync with that peer when last connected).
	Bitmap  map[string]uint64 `json:"bitmap"`
	Disk    DiskState         `json:"disk"`
	Primary bool              `json:"primary"`
	// CrashedPrimary: the replica crashed while primary; its hot extents
	// are in the bitmaps until a resync with the peers completes.
	CrashedPrimary bool  `json:"crashed_primary"`
	PrimarySince   int64 `json:"primary_since"`
	Clean          bool  `json:"clean"`
	// DiscardMyData: the operator resolved a split brain here; spent at
	// the next handshake that finds it.
	DiscardMyData bool `json:"discard_my_data,omitempty"`
	// Source is the primary whose writes this secondary last applied. The
	// other secondaries of that primary may hold more or less of its last
	// writes than this one: if this replica is promoted, it reconciles
	// them (a full resync, by checksums when csums is on).
	Source string `json:"source,omitempty"`
	// Blank: the replica is a file geobooth created and nothing was
	// written to it or synced into it yet. A blank replica that meets data
	// it shares no generation with takes a full sync instead of refusing.
	Blank bool `json:"blank,omitempty"`
}

func newGeneration() uint64 {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("no randomness for a generation identifier: %v", err))
	}
	return binary.BigEndian.Uint64(b[:]) | 1
}

// rotate starts a new generation: the current one goes to the history.
func (m *meta) rotate() {
	m.History = append([]uint64{m.Current}, m.History...)
	if len(m.History) > historySize {
		m.History = m.History[:historySize]
	}
	m.Current = newGeneration()
}

// genesis is the generation replicas created together start in (new
// replicas "uptodate": equal by declaration, like DRBD's skipped initial
// sync). Every replica of the volume computes the same one, so after they
// part and both write, they still share a base: a split brain is told apart
// from unrelated data, and resyncs stay incremental.
func genesis(cfg VolumeConfig) uint64 {
	h := fnv.New64a()
	fmt.Fprintf(h, "geobooth genesis\x00%s\x00%d", cfg.Name, cfg.Size)
	if g := h.Sum64(); g != 0 {
		return g
	}
	return 1
}

func inHistory(h []uint64, g uint64) bool {
	for _, x := range h {
		if x == g && g != 0 {
			return true
		}
	}
	return false
}

type metaStore struct{ path string }

func (s metaStore) load() (*meta, bool, error) {
	b, err := os.ReadFile(s.path)
	if os.IsNotExist(err) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read volume metadata: %w", err)
	}
	var m meta
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, false, fmt.Errorf("volume metadata %s is corrupt: %w", s.path, err)
	}
	if m.Bitmap == nil {
		m.Bitmap = map[string]uint64{}
	}
	return &m, true, nil
}

// save writes the metadata atomically and durably.
func (s metaStore) save(m *meta) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if err := durable.WriteFile(s.path, b, 0o600); err != nil {
		return fmt.Errorf("write volume metadata %s: %w", s.path, err)
	}
	return nil
}
