package confkit

import "testing"

func TestKeyLinesFindTheLineOfEachKey(t *testing.T) {
	doc := `# zones
[[keys]]
name = "xfr"
secret = "c2VjcmV0"

[[zones]]
origin = "example.test."
notify = ["192.0.2.53:53"]

[[zones.failover]]
name = "www"
ttl = "30s"
sites = { east = { targets = ["192.0.2.10"] } }

[[zones.failover]]
name = "api"
ttl = "0s"

[zones.failover.health]
rise = 0

[[zones]]
origin = "example.org."
"quoted" = 1
`
	l := KeyLines(doc)
	for key, want := range map[string]int{
		"keys.0.secret":                         4,
		"zones.0.origin":                        7,
		"zones.0.notify.0":                      8,
		"zones.0.failover.0.ttl":                12,
		"zones.0.failover.0.sites.east.targets": 13,
		"zones.0.failover.1.ttl":                17,
		"zones.0.failover.1.health.rise":        20,
		"zones.1.origin":                        23,
		"zones.1.quoted":                        24,
		"zones.1":                               22,
		"nothing":                               0,
		// As the decoder names unknown keys: without indexes.
		"zones.failover.health.rise": 20,
		"zones.failover.ttl.x":       12,
		"zones.quoted":               24,
	} {
		if got := l.Line(key); got != want {
			t.Errorf("line of %s = %d, want %d", key, got, want)
		}
	}
}
