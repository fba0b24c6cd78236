package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/geobooth/geobooth/ticket"
)

// store keeps each ticket's durable state in its own file, replaced
// atomically (write, fsync, rename, fsync the folder).
type store struct{ dir string }

func newStore(dir string) (*store, error) {
	d := filepath.Join(dir, "tickets")
	if err := os.MkdirAll(d, 0o700); err != nil {
		return nil, fmt.Errorf("create state dir: %w", err)
	}
	return &store{dir: d}, nil
}

type stored struct {
	Version int               `json:"version"`
	State   ticket.Persistent `json:"state"`
}

func (s *store) path(name string) string { return filepath.Join(s.dir, name+".json") }

// load returns the persisted state, or nil when there is none (a first
// boot or a wiped disk).
func (s *store) load(name string) (*ticket.Persistent, error) {
	b, err := os.ReadFile(s.path(name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read state of ticket %q: %w", name, err)
	}
	var st stored
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("state of ticket %q in %s is corrupt (%v): move it away to restart this member as one that lost its state", name, s.path(name), err)
	}
	if st.Version != 1 {
		return nil, fmt.Errorf("state of ticket %q: unknown version %d", name, st.Version)
	}
	return &st.State, nil
}

func (s *store) save(name string, p ticket.Persistent) error {
	b, err := json.Marshal(stored{Version: 1, State: p})
	if err != nil {
		return fmt.Errorf("encode state of ticket %q: %w", name, err)
	}
	tmp := s.path(name) + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("persist ticket %q: %w", name, err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("persist ticket %q: %w", name, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("persist ticket %q: fsync: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("persist ticket %q: %w", name, err)
	}
	if err := os.Rename(tmp, s.path(name)); err != nil {
		return fmt.Errorf("persist ticket %q: %w", name, err)
	}
	d, err := os.Open(s.dir)
	if err != nil {
		return fmt.Errorf("persist ticket %q: %w", name, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("persist ticket %q: fsync dir: %w", name, err)
	}
	return nil
}
