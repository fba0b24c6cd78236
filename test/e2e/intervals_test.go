package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The safety check on services must see an overlap, also one that comes
// from a killed daemon whose CIB still grants the ticket.
func TestServiceIntervalsFindOverlaps(t *testing.T) {
	s := time.Second
	for _, tt := range []struct {
		name    string
		events  []event
		killed  map[string][]time.Duration
		overlap bool
	}{
		{name: "handover", events: []event{
			{Site: "east", Op: "grant", Start: 1 * s, End: 2 * s, Svc: "running"},
			{Site: "east", Op: "revoke", Start: 10 * s, End: 11 * s, Svc: "stopped"},
			{Site: "west", Op: "grant", Start: 12 * s, End: 13 * s, Svc: "running"},
		}},
		{name: "west starts before east stopped", overlap: true, events: []event{
			{Site: "east", Op: "grant", Start: 1 * s, End: 2 * s, Svc: "running"},
			{Site: "west", Op: "grant", Start: 10 * s, End: 11 * s, Svc: "running"},
			{Site: "east", Op: "revoke", Start: 10*s + 500*time.Millisecond, End: 12 * s, Svc: "stopped"},
		}},
		{name: "killed owner, guard stops it in time", killed: map[string][]time.Duration{"east": {5 * s}}, events: []event{
			{Site: "east", Op: "grant", Start: 1 * s, End: 2 * s, Svc: "running"},
			{Site: "west", Op: "grant", Start: 5*s + guardInterval + 1, End: 9 * s, Svc: "running"},
			{Site: "east", Op: "revoke", Start: 20 * s, End: 21 * s, Svc: "stopped"},
		}},
		// The CIB write the dying daemon had started (a renewal's grant)
		// lands just after the kill: the guard still stops the service.
		{name: "killed owner's last grant lands after the kill", killed: map[string][]time.Duration{"east": {5 * s}}, events: []event{
			{Site: "east", Op: "grant", Start: 1 * s, End: 2 * s, Svc: "running"},
			{Site: "east", Op: "grant", Start: 5*s + 10*time.Millisecond, End: 5*s + 150*time.Millisecond, Svc: "running"},
			{Site: "west", Op: "grant", Start: 5*s + guardInterval + 1, End: 9 * s, Svc: "running"},
		}},
		{name: "killed owner restarted, granted again", overlap: true, killed: map[string][]time.Duration{"east": {5 * s}}, events: []event{
			{Site: "east", Op: "grant", Start: 1 * s, End: 2 * s, Svc: "running"},
			{Site: "east", Op: "grant", Start: 20 * s, End: 21 * s, Svc: "running"},
			{Site: "west", Op: "grant", Start: 22 * s, End: 23 * s, Svc: "running"},
		}},
		{name: "killed owner, west faster than the guard", overlap: true, killed: map[string][]time.Duration{"east": {5 * s}}, events: []event{
			{Site: "east", Op: "grant", Start: 1 * s, End: 2 * s, Svc: "running"},
			{Site: "west", Op: "grant", Start: 6 * s, End: 7 * s, Svc: "running"},
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			g := &geo{events: filepath.Join(t.TempDir(), "events.jsonl"), killed: tt.killed}
			f, err := os.Create(g.events)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range tt.events {
				b, _ := json.Marshal(e)
				f.Write(append(b, '\n'))
			}
			f.Close()
			if found := g.overlaps(); (len(found) > 0) != tt.overlap {
				t.Errorf("overlaps %q, want some: %v; spans %+v", found, tt.overlap, g.serviceIntervals(100*s))
			}
		})
	}
}
