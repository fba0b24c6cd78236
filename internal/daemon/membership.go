package daemon

import (
	"fmt"

	"github.com/geobooth/geobooth/internal/buildinfo"
	"github.com/geobooth/geobooth/internal/membership"
	"github.com/geobooth/geobooth/internal/node"
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
		"digest": fmt.Sprintf("%016x", cfg.Digest())}
	m, err := membership.New(cfg.Serf, cfg.Local, self.Serf, join, tags, d.Log.With("component", "membership"), d.Registry)
	if err != nil {
		return nil, fmt.Errorf("membership: %w", err)
	}
	return m, nil
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
