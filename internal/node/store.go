package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/geobooth/geobooth/ticket"
)

// store keeps each ticket's durable state in its own file, replaced
// atomically (write, fsync, rename, fsync the folder). A state equal to the
// one already on disk is not written again. Only the node's loop uses it.
type store struct {
	dir  string
	last map[string]string // what is on disk, by ticket
}

func newStore(dir string) (*store, error) {
	d := filepath.Join(dir, "tickets")
	if err := os.MkdirAll(d, 0o700); err != nil {
		return nil, fmt.Errorf("create state dir: %w", err)
	}
	return &store{dir: d, last: map[string]string{}}, nil
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

// namedState is one ticket's state to persist.
type namedState struct {
	name  string
	state ticket.Persistent
}

// saveAll makes the states durable in one group commit: every changed
// file is written next to its place, the file system is flushed once, the
// files are renamed into place, and the folder is flushed. A state equal to
// the one on disk is skipped; for a ticket saved twice the last state
// counts. It returns the tickets that could not be saved.
func (s *store) saveAll(states []namedState) map[string]error {
	latest := map[string]ticket.Persistent{}
	var order []string
	for _, st := range states {
		if _, ok := latest[st.name]; !ok {
			order = append(order, st.name)
		}
		latest[st.name] = st.state
	}
	failed := map[string]error{}
	type write struct {
		name string
		data []byte
	}
	var writes []write
	for _, name := range order {
		b, err := json.Marshal(stored{Version: 1, State: latest[name]})
		if err != nil {
			failed[name] = fmt.Errorf("encode state of ticket %q: %w", name, err)
			continue
		}
		if s.last[name] == string(b) {
			continue
		}
		delete(s.last, name)
		if err := os.WriteFile(s.path(name)+".tmp", b, 0o600); err != nil {
			failed[name] = fmt.Errorf("persist ticket %q: %w", name, err)
			continue
		}
		writes = append(writes, write{name, b})
	}
	if len(writes) == 0 {
		return failed
	}
	d, err := os.Open(s.dir)
	if err != nil {
		for _, w := range writes {
			failed[w.name] = fmt.Errorf("persist ticket %q: %w", w.name, err)
		}
		return failed
	}
	defer d.Close()
	if err := unix.Syncfs(int(d.Fd())); err != nil {
		for _, w := range writes {
			failed[w.name] = fmt.Errorf("persist ticket %q: flush: %w", w.name, err)
		}
		return failed
	}
	var renamed []write
	for _, w := range writes {
		if err := os.Rename(s.path(w.name)+".tmp", s.path(w.name)); err != nil {
			failed[w.name] = fmt.Errorf("persist ticket %q: %w", w.name, err)
			continue
		}
		renamed = append(renamed, w)
	}
	if err := d.Sync(); err != nil {
		for _, w := range renamed {
			failed[w.name] = fmt.Errorf("persist ticket %q: fsync dir: %w", w.name, err)
		}
		return failed
	}
	for _, w := range renamed {
		s.last[w.name] = string(w.data)
	}
	return failed
}
