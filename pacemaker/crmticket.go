package pacemaker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// CrmTicket drives the CIB with Pacemaker's crm_ticket. Arguments go as an
// argv (no shell), values always with --attr-value= so that nothing is
// read as an option. It does not serialise calls; Driver does.
type CrmTicket struct {
	// Path of crm_ticket.
	Path string
	// CrmMon is the path of crm_mon, which tells whether resources run.
	CrmMon string
	// CrmAttribute is the path of crm_attribute (the incarnation).
	CrmAttribute string
	// CIBFile, when set, is passed as CIB_file.
	CIBFile string
}

// ExitError is a Pacemaker tool that ran and failed.
type ExitError struct {
	Tool   string
	Args   []string
	Code   int
	Stderr string
}

func (e *ExitError) Error() string {
	return fmt.Sprintf("%s %s: exit %d: %s", e.Tool, strings.Join(e.Args, " "), e.Code, strings.TrimSpace(e.Stderr))
}

// exitNoSuchObject is Pacemaker's CRM_EX_NOSUCH: no such ticket or
// attribute.
const exitNoSuchObject = 105

func (c *CrmTicket) run(ctx context.Context, args ...string) (string, error) {
	return c.tool(ctx, c.Path, args...)
}

// tool runs one of Pacemaker's tools on the site's CIB.
func (c *CrmTicket) tool(ctx context.Context, path string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = os.Environ()
	if c.CIBFile != "" {
		cmd.Env = append(cmd.Env, "CIB_file="+c.CIBFile)
	}
	// A hung crm_ticket is killed with anything it started.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		return "", fmt.Errorf("%s %s: %w", filepath.Base(path), strings.Join(args, " "), ctx.Err())
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return out.String(), &ExitError{Tool: filepath.Base(path), Args: args, Code: ee.ExitCode(), Stderr: errb.String()}
	}
	if err != nil {
		return "", fmt.Errorf("run %s: %w", path, err)
	}
	return out.String(), nil
}

func attr(name, value string) []string { return []string{"-S", name, "--attr-value=" + value} }

// Grant writes granted=true with owner, expires, term and the config name
// in one command, as Booth does.
func (c *CrmTicket) Grant(ctx context.Context, t string, g Grant) error {
	args := []string{"-t", t, "-g", "--force"}
	args = append(args, attr("owner", g.Owner)...)
	exp := int64(0)
	if !g.Expires.IsZero() {
		exp = g.Expires.Unix()
	}
	args = append(args, attr("expires", strconv.FormatInt(exp, 10))...)
	args = append(args, attr("term", strconv.FormatUint(g.Term, 10))...)
	args = append(args, attr("geobooth-cfg-name", g.CfgName)...)
	if g.Activate {
		args = append(args, attr("standby", "false")...)
	}
	_, err := c.run(ctx, args...)
	return err
}

// Revoke writes granted=false and clears the owner in one command.
func (c *CrmTicket) Revoke(ctx context.Context, t string, r Revoke) error {
	args := []string{"-t", t, "-r", "--force"}
	args = append(args, attr("owner", "")...)
	args = append(args, attr("geobooth-cfg-name", r.CfgName)...)
	_, err := c.run(ctx, args...)
	return err
}

// Standby puts the ticket in standby: its resources stop without the
// ticket being revoked (Booth's one safe manual CIB change).
func (c *CrmTicket) Standby(ctx context.Context, t string) error {
	_, err := c.run(ctx, "-t", t, "-s")
	return err
}

// Activate ends a standby.
func (c *CrmTicket) Activate(ctx context.Context, t string) error {
	_, err := c.run(ctx, "-t", t, "-a")
	return err
}

// State reads the ticket back (crm_ticket -t T -q).
func (c *CrmTicket) State(ctx context.Context, t string) (TicketState, error) {
	out, err := c.run(ctx, "-t", t, "-q")
	var ee *ExitError
	if errors.As(err, &ee) && ee.Code == exitNoSuchObject {
		return TicketState{Attrs: map[string]string{}}, nil
	}
	if err != nil {
		return TicketState{}, err
	}
	return parseState(out)
}

// SetAttr sets a ticket attribute (a geo attribute).
func (c *CrmTicket) SetAttr(ctx context.Context, t, name, value string) error {
	if name == "granted" {
		return fmt.Errorf("set attribute %q: use Grant or Revoke", name)
	}
	_, err := c.run(ctx, append([]string{"-t", t}, attr(name, value)...)...)
	return err
}

// DeleteAttr deletes a ticket attribute; a missing one is not an error.
func (c *CrmTicket) DeleteAttr(ctx context.Context, t, name string) error {
	if name == "granted" {
		return fmt.Errorf("delete attribute %q: use Revoke", name)
	}
	_, err := c.run(ctx, "-t", t, "-D", name)
	var ee *ExitError
	if errors.As(err, &ee) && ee.Code == exitNoSuchObject {
		return nil
	}
	return err
}

// Running lists the resources the ticket guards that still run as the
// cluster sees them: those its rsc_ticket constraints name (directly or in
// resource sets), active anywhere, or only promoted where the constraint
// is about that role. A constraint with loss-policy freeze keeps its
// resources running on purpose and is left out.
func (c *CrmTicket) Running(ctx context.Context, t string) ([]string, error) {
	out, err := c.run(ctx, "-t", t, "-c")
	var ee *ExitError
	if errors.As(err, &ee) && ee.Code == exitNoSuchObject {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	guarded, err := parseConstraints(out)
	if err != nil || len(guarded) == 0 {
		return nil, err
	}
	mon, err := c.tool(ctx, c.CrmMon, "-1", "--output-as=xml")
	if err != nil {
		return nil, err
	}
	return runningOf(mon, guarded)
}

// Noop is the driver of a site without Pacemaker: grants and revokes do
// nothing, standby and attributes are refused.
type Noop struct{}

// Grant does nothing.
func (Noop) Grant(context.Context, string, Grant) error { return nil }

// Revoke does nothing.
func (Noop) Revoke(context.Context, string, Revoke) error { return nil }

// Standby is refused.
func (Noop) Standby(context.Context, string) error { return ErrNoPacemaker }

// Activate is refused.
func (Noop) Activate(context.Context, string) error { return ErrNoPacemaker }

// Running reports nothing running.
func (Noop) Running(context.Context, string) ([]string, error) { return nil, nil }

// State reports nothing known.
func (Noop) State(context.Context, string) (TicketState, error) {
	return TicketState{Attrs: map[string]string{}}, nil
}

// SetAttr is refused.
func (Noop) SetAttr(context.Context, string, string, string) error { return ErrNoPacemaker }

// DeleteAttr is refused.
func (Noop) DeleteAttr(context.Context, string, string) error { return ErrNoPacemaker }
