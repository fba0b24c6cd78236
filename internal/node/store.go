package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/geobooth/geobooth/kit/durable"
	"github.com/geobooth/geobooth/ticket"
	"github.com/geobooth/geobooth/ticket/engine"
)

// store keeps each ticket's durable state in its own file, replaced
// atomically (write, flush, rename, flush the folder). A state equal to the
// one already on disk is not written again. Only the store's goroutine
// writes; load runs before it starts.
type store struct {
	dir  string
	cl   ticket.Cluster
	last map[string]string // what is on disk, by ticket
}

func newStore(dir string, cl ticket.Cluster) (*store, error) {
	d := filepath.Join(dir, "tickets")
	if err := os.MkdirAll(d, 0o700); err != nil {
		return nil, fmt.Errorf("create state dir: %w", err)
	}
	return &store{dir: d, cl: cl, last: map[string]string{}}, nil
}

// stored is a ticket's file: version 2 holds an engine.Record; version 1
// (before members were named) a ticket.Persistent.
type stored struct {
	Version int                `json:"version"`
	Record  *engine.Record     `json:"record,omitempty"`
	State   *ticket.Persistent `json:"state,omitempty"`
}

func (s *store) path(name string) string { return filepath.Join(s.dir, name+".json") }

// load returns the stored record, or nil when there is none (a first boot
// or a wiped disk).
func (s *store) load(name string) (*engine.Record, error) {
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
	switch {
	case st.Version == 2 && st.Record != nil:
		s.last[name] = string(b)
		return st.Record, nil
	case st.Version == 1 && st.State != nil:
		// Written by a version that stored member indexes: they are read
		// with the current member list.
		p := st.State
		r := &engine.Record{Ticket: name, Term: p.Term, Acked: s.cl.Name(p.Acked), Owner: s.cl.Name(p.Owner),
			Managed: p.Managed, Attrs: p.Attrs, AttrClock: p.AttrClock, Binding: p.Binding}
		for _, m := range s.cl.Members {
			r.Members = append(r.Members, m.Name)
		}
		return r, nil
	}
	return nil, fmt.Errorf("state of ticket %q in %s: unknown version %d", name, s.path(name), st.Version)
}

// remove deletes the tickets' files, durably (none is fine).
func (s *store) remove(names []string) error {
	if len(names) == 0 {
		return nil
	}
	for _, name := range names {
		if err := os.Remove(s.path(name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove state of ticket %q: %w", name, err)
		}
		delete(s.last, name)
	}
	if err := durable.SyncDir(s.dir); err != nil {
		return fmt.Errorf("remove ticket state: %w", err)
	}
	return nil
}

// saveAll makes the records durable in one group commit: every changed
// file is written next to its place, the file system is flushed once, the
// files are renamed into place, and the folder is flushed. A record equal
// to the one on disk is skipped. It returns the tickets that could not be
// saved.
func (s *store) saveAll(recs []engine.Record) map[string]error {
	failed := map[string]error{}
	type write struct {
		name string
		data []byte
	}
	var writes []write
	for i := range recs {
		name := recs[i].Ticket
		b, err := json.Marshal(stored{Version: 2, Record: &recs[i]})
		if err != nil {
			failed[name] = fmt.Errorf("encode state of ticket %q: %w", name, err)
			continue
		}
		if s.last[name] == string(b) {
			continue
		}
		delete(s.last, name)
		if err := os.WriteFile(s.path(name)+".tmp", b, 0o600); err != nil {
			failed[name] = fmt.Errorf("write state of ticket %q: %w", name, err)
			continue
		}
		writes = append(writes, write{name, b})
	}
	if len(writes) == 0 {
		return failed
	}
	fail := func(ws []write, format string, err error) map[string]error {
		for _, w := range ws {
			failed[w.name] = fmt.Errorf(format, w.name, err)
		}
		return failed
	}
	d, err := os.Open(s.dir)
	if err != nil {
		return fail(writes, "write state of ticket %q: %w", err)
	}
	defer d.Close()
	if err := unix.Syncfs(int(d.Fd())); err != nil {
		return fail(writes, "write state of ticket %q: flush: %w", err)
	}
	var renamed []write
	for _, w := range writes {
		if err := os.Rename(s.path(w.name)+".tmp", s.path(w.name)); err != nil {
			failed[w.name] = fmt.Errorf("write state of ticket %q: %w", w.name, err)
			continue
		}
		renamed = append(renamed, w)
	}
	if err := d.Sync(); err != nil {
		return fail(renamed, "write state of ticket %q: flush the folder: %w", err)
	}
	for _, w := range renamed {
		s.last[w.name] = string(w.data)
	}
	return failed
}
