package pacemaker

import (
	"encoding/xml"
	"fmt"
	"sort"
	"strings"
)

// guarded is a resource a ticket guards, as an rsc_ticket names it.
type guarded struct {
	ID string
	// Promoted: the constraint is about the promoted role only (a
	// promotable clone whose instances may stay unpromoted).
	Promoted bool
}

// parseConstraints reads `crm_ticket -t T -c`: a "Constraints XML:"
// header, then rsc_ticket elements, each naming a resource (rsc,
// rsc-role) or holding resource sets of resource_ref elements.
func parseConstraints(out string) ([]guarded, error) {
	body := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(out), "Constraints XML:"))
	if body == "" {
		return nil, nil
	}
	type ref struct {
		ID string `xml:"id,attr"`
	}
	type set struct {
		Role string `xml:"role,attr"`
		Refs []ref  `xml:"resource_ref"`
	}
	type rscTicket struct {
		Rsc        string `xml:"rsc,attr"`
		Role       string `xml:"rsc-role,attr"`
		LossPolicy string `xml:"loss-policy,attr"`
		Sets       []set  `xml:"resource_set"`
	}
	var doc struct {
		Items []rscTicket `xml:"rsc_ticket"`
	}
	if err := xml.Unmarshal([]byte("<c>"+body+"</c>"), &doc); err != nil {
		return nil, fmt.Errorf("parse the ticket's constraints: %w", err)
	}
	promoted := func(role string) bool { return role == "Promoted" || role == "Master" }
	var out2 []guarded
	for _, c := range doc.Items {
		if c.LossPolicy == "freeze" {
			continue
		}
		if c.Rsc != "" {
			out2 = append(out2, guarded{ID: c.Rsc, Promoted: promoted(c.Role)})
		}
		for _, s := range c.Sets {
			for _, r := range s.Refs {
				out2 = append(out2, guarded{ID: r.ID, Promoted: promoted(s.Role)})
			}
		}
	}
	return out2, nil
}

// monNode is an element of crm_mon's resources section: a resource, or a
// group, clone or bundle holding resources.
type monNode struct {
	XMLName  xml.Name
	ID       string    `xml:"id,attr"`
	Role     string    `xml:"role,attr"`
	Active   string    `xml:"active,attr"`
	Children []monNode `xml:",any"`
}

// runningOf lists the guarded resources that crm_mon's XML shows running
// (or promoted, for a constraint on that role).
func runningOf(mon string, guard []guarded) ([]string, error) {
	var doc struct {
		Resources monNode `xml:"resources"`
	}
	if err := xml.Unmarshal([]byte(mon), &doc); err != nil {
		return nil, fmt.Errorf("parse crm_mon's XML: %w", err)
	}
	var running []string
	for _, g := range guard {
		for _, n := range findAll(doc.Resources.Children, g.ID, nil) {
			if runs(n, g.Promoted) {
				running = append(running, g.ID)
				break
			}
		}
	}
	sort.Strings(running)
	return running, nil
}

// findAll collects the elements with that id (a clone's instances share
// their primitive's).
func findAll(ns []monNode, id string, acc []*monNode) []*monNode {
	for i := range ns {
		if ns[i].ID == id {
			acc = append(acc, &ns[i])
		}
		acc = findAll(ns[i].Children, id, acc)
	}
	return acc
}

// runs reports whether n, or a resource under it, is active (promoted).
func runs(n *monNode, promoted bool) bool {
	if n.XMLName.Local == "resource" {
		if promoted {
			return n.Role == "Promoted" || n.Role == "Master"
		}
		return n.Active == "true"
	}
	for i := range n.Children {
		if runs(&n.Children[i], promoted) {
			return true
		}
	}
	return false
}
