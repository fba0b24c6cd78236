package node

import (
	"time"

	"github.com/geobooth/geobooth/ticket"
)

// Config is what the ticket runtime needs of the member's configuration;
// the daemon hands it out of the configuration file.
type Config struct {
	// ClusterName and ConfigPath are given to handlers (CONF_NAME,
	// CONF_PATH), as Booth does.
	ClusterName string
	ConfigPath  string
	// Members in configuration order (a member's index is its site id in
	// the protocol); Self is this member's index.
	Members []Member
	Self    int
	// StateDir holds the tickets' durable state.
	StateDir string
	Tickets  []ticket.Config
	// HandlerTimeouts bounds each ticket's before-acquire handler.
	HandlerTimeouts map[string]time.Duration
	// Digest summarises the cluster's configuration: members whose digests
	// differ refuse each other's datagrams.
	Digest uint64
	// MaxElections bounds the elections of this member's own under way
	// at once (see engine.Config).
	MaxElections int
	// MaxTimeSkew bounds the age of an accepted datagram.
	MaxTimeSkew time.Duration
	// Key authenticates datagrams; NextKey, when set, is accepted too (a
	// key rotation under way).
	Key, NextKey []byte
}

// Member is one member of the cluster.
type Member struct {
	Name    string
	Role    ticket.Role
	Weight  int
	Address string // the ticket protocol's UDP address
	API     string // its HTTP API, for peers and dashboards
}

// local is this member's name.
func (c *Config) local() string { return c.Members[c.Self].Name }

// cluster is the membership as the ticket package sees it.
func (c *Config) cluster() ticket.Cluster {
	cl := ticket.Cluster{Self: c.Self}
	for _, m := range c.Members {
		cl.Members = append(cl.Members, ticket.Member{Name: m.Name, Role: m.Role, Weight: m.Weight})
	}
	return cl
}
