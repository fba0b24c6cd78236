package daemon

import (
	"fmt"
	"maps"

	"github.com/geobooth/geobooth/internal/membership"
	"github.com/geobooth/geobooth/internal/node"
	"github.com/geobooth/geobooth/kit/buildinfo"
	"github.com/geobooth/geobooth/replication"
	"github.com/geobooth/geobooth/ticket"
)

// startMembership creates the serf member when the configuration asks for
// one, tagged with role, API address, version and config digest, joining
// the other members' serf addresses.
func (d *Daemon) startMembership() (*membership.Membership, error) {
	cfg := d.Config
	if !cfg.SerfEnabled() {
		return nil, nil
	}
	self := cfg.Cluster.Members[cfg.Self]
	var join []string
	for i, m := range cfg.Cluster.Members {
		if i != cfg.Self && m.Serf != "" {
			join = append(join, m.Serf)
		}
	}
	tags := map[string]string{"role": self.Role, "api": cfg.API.Listen, "version": buildinfo.String(),
		"digest": fmt.Sprintf("%016x", cfg.Digest()), "wire": Wire()}
	m, err := membership.New(cfg.Serf, cfg.Local, self.Serf, join, tags, d.Log.With("component", "membership"), d.Registry)
	if err != nil {
		return nil, fmt.Errorf("membership: %w", err)
	}
	d.tags = tags
	return m, nil
}

// Wire names the protocol versions this build speaks.
func Wire() string {
	return fmt.Sprintf("ticket/%d replication/%d", ticket.WireVersion, replication.ProtocolVersion)
}

// tagZones gossips the digest of the zones served, so members can see
// that they serve different zones files (ticketctl peers). Callers hold
// reloadMu or run before Run's services start.
func (d *Daemon) tagZones(digest string) {
	if d.member == nil || d.tags == nil || d.tags["zones"] == digest {
		return
	}
	tags := maps.Clone(d.tags)
	tags["zones"] = digest
	if err := d.member.SetTags(tags); err != nil {
		d.Log.Warn("cannot gossip the zones digest", "err", err)
		return
	}
	d.tags = tags
}

// serfStatus adapts membership to what the node reports in Peers.
type serfStatus struct{ m *membership.Membership }

func (s serfStatus) MemberStatus() map[string]node.MemberStatus {
	out := map[string]node.MemberStatus{}
	for _, mb := range s.m.Members() {
		out[mb.Name] = node.MemberStatus{Status: mb.Status, Tags: mb.Tags}
	}
	return out
}
