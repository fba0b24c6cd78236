package pacemaker

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Grant is what one atomic grant writes: the ticket granted, with the
// attributes Booth writes in the same command.
type Grant struct {
	Owner   string
	Term    uint64
	Expires time.Time
	// CfgName goes into geobooth-cfg-name (the cluster's name), so
	// configuration tools can tell geobooth's tickets.
	CfgName string
	// Activate clears a standby left by a planned move.
	Activate bool
}

// Revoke is what one atomic revoke writes; the owner is cleared.
type Revoke struct {
	CfgName string
}

// TicketState is a ticket as the local CIB has it.
type TicketState struct {
	// Known: the CIB has a ticket_state for it.
	Known   bool
	Granted bool
	Standby bool
	Owner   string
	Term    uint64
	Expires time.Time
	// Attrs holds every other attribute (geo attributes).
	Attrs map[string]string
}

// CIB is what geobooth does to a site's cluster information base.
type CIB interface {
	Grant(ctx context.Context, ticket string, g Grant) error
	Revoke(ctx context.Context, ticket string, r Revoke) error
	Standby(ctx context.Context, ticket string) error
	Activate(ctx context.Context, ticket string) error
	State(ctx context.Context, ticket string) (TicketState, error)
	// Running lists the resources the ticket guards that still run.
	Running(ctx context.Context, ticket string) ([]string, error)
	SetAttr(ctx context.Context, ticket, name, value string) error
	DeleteAttr(ctx context.Context, ticket, name string) error
}

// ErrNoPacemaker: this site runs no Pacemaker (the no-op driver).
var ErrNoPacemaker = errors.New("this member has no Pacemaker driver")

// parseState reads `crm_ticket -t T -q` output: a "State XML:" header, a
// blank line, and one ticket_state element.
func parseState(out string) (TicketState, error) {
	st := TicketState{Attrs: map[string]string{}}
	body := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(out), "State XML:"))
	if body == "" {
		return st, nil
	}
	var el struct {
		XMLName xml.Name
		Attrs   []xml.Attr `xml:",any,attr"`
	}
	if err := xml.Unmarshal([]byte(body), &el); err != nil {
		return st, fmt.Errorf("parse ticket state %q: %w", body, err)
	}
	if el.XMLName.Local != "ticket_state" {
		return st, fmt.Errorf("parse ticket state: root element is %q, want ticket_state", el.XMLName.Local)
	}
	st.Known = true
	for _, a := range el.Attrs {
		v := a.Value
		switch a.Name.Local {
		case "id", "last-granted", "geobooth-cfg-name", "booth-cfg-name":
		case "granted":
			st.Granted = v == "true" || v == "1" || v == "yes"
		case "standby":
			st.Standby = v == "true" || v == "1" || v == "yes"
		case "owner":
			st.Owner = v
		case "term":
			st.Term, _ = strconv.ParseUint(v, 10, 64)
		case "expires":
			if n, err := strconv.ParseInt(v, 10, 64); err == nil && n > 0 {
				st.Expires = time.Unix(n, 0)
			}
		default:
			st.Attrs[a.Name.Local] = v
		}
	}
	return st, nil
}
