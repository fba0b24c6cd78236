// Package handover is the ticket state a geoboothd running as a Booth
// member leaves in its state folder when it stops cleanly, for the same
// member's first start on geobooth's own protocol (the cut-over,
// docs/booth.md). It says, for each ticket, what the member last promised
// under Booth's protocol, so that the native member keeps that promise
// through its restart window instead of refusing everyone, and the site
// that held the ticket keeps it across the switch.
//
// A Booth member writes the file twice: before it sends anything, marked
// incomplete (a Booth run is under way: any state of geobooth's protocol
// in the folder is older than promises given since), and after it stopped
// sending, complete (its last word). A member of geobooth's protocol that
// finds the file replaces its own state of each ticket listed with what
// the file says, or, when the Booth run did not end cleanly, starts those
// tickets as a member that lost its state; then it marks the file
// imported.
package handover

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/geobooth/geobooth/kit/durable"
)

// Name is the file's name in the state folder.
const Name = "booth-handover.json"

// version is the file format's version.
const version = 1

// File is what one member leaves.
type File struct {
	Version int `json:"version"`
	// Self is the Booth address of the member that wrote it: a native
	// member refuses a file written by another.
	Self    netip.Addr `json:"self"`
	Written time.Time  `json:"written"`
	// Complete: written after the member stopped sending. An incomplete
	// file names the tickets only.
	Complete bool     `json:"complete"`
	Tickets  []Ticket `json:"tickets"`
}

// Ticket is one ticket's last state under Booth, in the terms of
// geobooth's durable state (ticket.Persistent).
type Ticket struct {
	Name string `json:"name"`
	Term uint64 `json:"term"`
	// Acked is the site this member last promised (a vote, or an
	// acknowledged lease); invalid when none, or when it cannot tell
	// which of two was the last (then the native member refuses every
	// site for its restart window, as one that lost its state).
	Acked netip.Addr `json:"acked"`
	// Owner is the leader it knew (invalid: none), Granted whether the
	// ticket was granted and not revoked.
	Owner   netip.Addr `json:"owner"`
	Granted bool       `json:"granted"`
	// Manual: the ticket's mode was manual.
	Manual bool `json:"manual"`
	// Binding is how long a promise given under Booth binds the member:
	// the ticket's expire plus acquire-after in booth.conf.
	Binding time.Duration `json:"binding_ns"`
}

// Path is the file's path in the state folder dir.
func Path(dir string) string { return filepath.Join(dir, Name) }

// Write leaves f in dir, durably.
func Write(dir string, f File) error {
	f.Version = version
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("encode the Booth handover: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("write the Booth handover: %w", err)
	}
	if err := durable.WriteFile(Path(dir), append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("write the Booth handover: %w", err)
	}
	return nil
}

// Read returns the file in dir, or nil when there is none.
func Read(dir string) (*File, error) {
	b, err := os.ReadFile(Path(dir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the Booth handover: %w", err)
	}
	var f File
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("the Booth handover %s is corrupt (%v): move it away to start as a member without state", Path(dir), err)
	}
	if f.Version != version {
		return nil, fmt.Errorf("the Booth handover %s: unknown version %d", Path(dir), f.Version)
	}
	return &f, nil
}

// MarkImported renames the file in dir so that it is never read again
// (kept for the operator).
func MarkImported(dir string) error {
	if err := os.Rename(Path(dir), Path(dir)+".imported"); err != nil {
		return fmt.Errorf("mark the Booth handover imported: %w", err)
	}
	if err := durable.SyncDir(dir); err != nil {
		return fmt.Errorf("mark the Booth handover imported: %w", err)
	}
	return nil
}
