package api

import "time"

// DNS is what GET /api/v1/dns shows: the member's authoritative server.
type DNS struct {
	Listen string    `json:"listen"`
	Zones  []DNSZone `json:"zones"`
}

// DNSZone is one zone's state.
type DNSZone struct {
	Origin   string         `json:"origin"`
	Serial   uint32         `json:"serial"`
	Names    []DNSName      `json:"names"`
	Notify   []DNSNotify    `json:"notify"`
	Update   *DNSNotify     `json:"update,omitempty"`
	Changes  []DNSChange    `json:"changes"`
	Checks   []DNSCheck     `json:"checks"`
	Vantages map[string]int `json:"vantage_ages_s"`
	// DS are the DS records of a signed zone's keys, for its parent.
	DS []string `json:"ds,omitempty"`
}

// DNSName is a failover name: what is served now and why.
type DNSName struct {
	Name    string   `json:"name"`
	Type    string   `json:"type"`
	Ticket  string   `json:"ticket"`
	Targets []string `json:"targets"`
	TTL     uint32   `json:"ttl"`
	Owner   string   `json:"owner,omitempty"`
	Why     string   `json:"why"`
}

// HealthState is a target's health: "unknown", "up" or "down".
type HealthState string

// DNSCheck is one health check with every vantage point's view.
type DNSCheck struct {
	Check    string                 `json:"check"`
	Site     string                 `json:"site"`
	Target   string                 `json:"target"`
	State    HealthState            `json:"state"`
	Vantages map[string]HealthState `json:"vantages"`
	Local    string                 `json:"local_result,omitempty"`
	Progress string                 `json:"progress,omitempty"`
}

// DNSNotify is the last NOTIFY (or dynamic update) sent to a target.
type DNSNotify struct {
	Target  string    `json:"target"`
	Key     string    `json:"key,omitempty"`
	Serial  uint32    `json:"serial"`
	Result  string    `json:"result"`
	At      time.Time `json:"at"`
	Retries int       `json:"retries"`
}

// DNSChange is one change of a zone's serial, and why.
type DNSChange struct {
	At     time.Time `json:"at"`
	Zone   string    `json:"zone"`
	Serial uint32    `json:"serial"`
	What   string    `json:"what"`
}
