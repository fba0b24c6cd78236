package site

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/geobooth/geobooth/kit/durable"
)

// checkIncarnation keeps a site daemon that Pacemaker moves between the
// site's nodes from trusting a state_dir another run has superseded.
//
// The daemon's durable ticket state is what it promised; started from
// older state it could vote against a promise it gave since. When the
// state moves with the daemon (a state device in its resource group,
// examples/pacemaker) it is always the latest; when each node keeps its
// own state_dir, a move back to a node finds what the daemon wrote there
// before it ran elsewhere. So every start raises an incarnation number
// kept twice: in the site's CIB (a cluster property every node sees) and
// in state_dir. If the CIB's is higher than state_dir's, a later run used
// another state_dir: this one is stale, and the daemon forgets it and
// starts as a member that lost its state (it abstains for a lease, which
// is safe). The order makes a crash at any point safe: the stale state is
// removed before the new number is written here, and the number is in
// state_dir before it is in the CIB, and in the CIB before the daemon
// boots and can promise anything under it (a failed CIB write stops the
// start).
//
// What it cannot catch: a CIB that lost the last write (a partition of
// the site whose side later lost the merge). Fencing and quorum within
// the site are what keep that from happening.
func (s *Site) checkIncarnation(ctx context.Context) error {
	name := fmt.Sprintf("geobooth-incarnation-%s-%s", s.Config.Cluster.Name, s.Config.Local)
	cib, ok, err := s.driver.Incarnation(ctx, name)
	if err != nil {
		return fmt.Errorf("read this daemon's incarnation from the CIB: %w", err)
	}
	if !ok {
		return nil
	}
	path := filepath.Join(s.Config.StateDir, "incarnation")
	local, err := readIncarnation(path)
	if err != nil {
		return err
	}
	if cib > local {
		had, err := s.Node.Forget()
		if err != nil {
			return err
		}
		if had > 0 {
			s.Log.Warn("this daemon ran elsewhere in the site since it wrote its state_dir: starting without that state (abstaining for one lease); keep state_dir on storage that moves with the daemon (examples/pacemaker)",
				"state_dir", s.Config.StateDir, "incarnation_here", local, "incarnation_in_cib", cib, "tickets", had)
		}
	}
	next := max(cib, local) + 1
	if err := durable.WriteFile(path, []byte(strconv.FormatUint(next, 10)+"\n"), 0o600); err != nil {
		return fmt.Errorf("write this daemon's incarnation: %w", err)
	}
	if err := s.driver.SetIncarnation(ctx, name, next); err != nil {
		return fmt.Errorf("write this daemon's incarnation into the CIB (it must be there before the daemon promises anything): %w", err)
	}
	s.Log.Info("incarnation", "number", next, "cib_property", name)
	return nil
}

func readIncarnation(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read this daemon's incarnation: %w", err)
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s is corrupt (%v): move it away, and the state_dir's tickets folder with it, to start this member as one that lost its state", path, err)
	}
	return n, nil
}
