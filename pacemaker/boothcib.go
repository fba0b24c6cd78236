package pacemaker

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// BoothWrite is one of Booth's atomic ticket writes, as boothd makes it
// (crm_ticket -g or -r --force with owner, expires, term and
// booth-cfg-name), so that Pacemaker constraints, pcs/crmsh and a boothd
// that takes over later all read the same state.
type BoothWrite struct {
	Granted bool
	// Owner is the leader's Booth site id (-1: revoked, 0: none known).
	Owner   int32
	Expires time.Time
	Term    uint32
	CfgName string
}

// WriteBooth writes w for ticket t in one crm_ticket command.
func (c *CrmTicket) WriteBooth(ctx context.Context, t string, w BoothWrite) error {
	op := "-r"
	if w.Granted {
		op = "-g"
	}
	exp := int64(0)
	if !w.Expires.IsZero() {
		exp = w.Expires.Unix()
	}
	args := []string{"-t", t, op, "--force"}
	args = append(args, attr("owner", strconv.FormatInt(int64(w.Owner), 10))...)
	args = append(args, attr("expires", strconv.FormatInt(exp, 10))...)
	args = append(args, attr("term", strconv.FormatUint(uint64(w.Term), 10))...)
	args = append(args, attr("booth-cfg-name", w.CfgName)...)
	_, err := c.run(ctx, args...)
	return err
}

// BoothTicket is a ticket as Booth loads it at start.
type BoothTicket struct {
	Granted bool
	// Owner is the owner's site id (0 when none, or not a site id).
	Owner   uint32
	Expires time.Time
	Term    uint32
	// Attrs are the geostore attributes (every attribute Booth does not
	// write itself).
	Attrs map[string]string
}

// BoothState reads ticket t as Booth loads it at start.
func (c *CrmTicket) BoothState(ctx context.Context, t string) (BoothTicket, error) {
	st, err := c.State(ctx, t)
	if err != nil {
		return BoothTicket{}, err
	}
	b := BoothTicket{Granted: st.Granted, Expires: st.Expires, Term: uint32(st.Term), Attrs: st.Attrs}
	if n, perr := strconv.ParseInt(strings.TrimSpace(st.Owner), 10, 64); perr == nil && n > 0 && n <= 1<<31-1 {
		b.Owner = uint32(n)
	}
	return b, nil
}

// ProbeAtomicGrant is the check boothd makes before it starts: crm_ticket
// must grant with attributes in one command, which versions that do
// show by asking before an unforced grant (exit 1 or 4 on "n").
func (c *CrmTicket) ProbeAtomicGrant(ctx context.Context) error {
	cmd := exec.CommandContext(ctx, c.Path, "-g", "-t", "any-ticket-name")
	cmd.Stdin = strings.NewReader("n\n")
	if c.CIBFile != "" {
		cmd.Env = append(cmd.Environ(), "CIB_file="+c.CIBFile)
	}
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) && (ee.ExitCode() == 1 || ee.ExitCode() == 4) {
		return nil
	}
	return fmt.Errorf("%s cannot grant a ticket with its attributes atomically (the probe `crm_ticket -g -t any-ticket-name` answered %v): upgrade Pacemaker", c.Path, err)
}
