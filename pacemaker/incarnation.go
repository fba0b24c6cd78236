package pacemaker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Incarnations is what a CIB offers to keep a site daemon's incarnation:
// a number the daemon raises at every start, in the CIB (which every node
// of the site shares) and in its state_dir, so that a daemon started from
// a state_dir another run has since superseded (a move back to a node
// that kept its own) can tell (site.checkIncarnation).
type Incarnations interface {
	// Incarnation reads the number (0 when none was ever written).
	Incarnation(ctx context.Context, name string) (uint64, error)
	SetIncarnation(ctx context.Context, name string, n uint64) error
}

var _ Incarnations = (*CrmTicket)(nil)

// Incarnation reads a cluster property with crm_attribute.
func (c *CrmTicket) Incarnation(ctx context.Context, name string) (uint64, error) {
	out, err := c.tool(ctx, c.CrmAttribute, "--type", "crm_config", "--name", name, "--query", "--quiet")
	var ee *ExitError
	if errors.As(err, &ee) && ee.Code == exitNoSuchObject {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(strings.TrimSpace(out), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("cluster property %s is %q, not an incarnation number: %w", name, strings.TrimSpace(out), err)
	}
	return n, nil
}

// SetIncarnation writes the cluster property.
func (c *CrmTicket) SetIncarnation(ctx context.Context, name string, n uint64) error {
	_, err := c.tool(ctx, c.CrmAttribute, "--type", "crm_config", "--name", name, "--update", strconv.FormatUint(n, 10))
	return err
}

// Incarnation reads the daemon's incarnation from the local CIB; ok is
// false when this site's CIB keeps none (no Pacemaker).
func (d *Driver) Incarnation(ctx context.Context, name string) (n uint64, ok bool, err error) {
	inc, ok := d.cib.(Incarnations)
	if !ok {
		return 0, false, nil
	}
	err = d.do(ctx, "read incarnation", name, func(ctx context.Context) error {
		var err error
		n, err = inc.Incarnation(ctx, name)
		return err
	})
	return n, err == nil, err
}

// SetIncarnation writes the daemon's incarnation into the local CIB.
func (d *Driver) SetIncarnation(ctx context.Context, name string, n uint64) error {
	inc, ok := d.cib.(Incarnations)
	if !ok {
		return ErrNoPacemaker
	}
	return d.do(ctx, "write incarnation", name, func(ctx context.Context) error { return inc.SetIncarnation(ctx, name, n) })
}
