package httpapi

import (
	"bufio"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/geobooth/geobooth/api"
)

// eventBackend holds a list of events a test adds to.
type eventBackend struct {
	noTickets
	mu      sync.Mutex
	evs     []api.Event
	dropped uint64 // events up to this seq are gone
	changed chan struct{}
}

func (b *eventBackend) add(seq uint64, kind string) {
	b.mu.Lock()
	b.evs = append(b.evs, api.Event{Seq: seq, Kind: kind})
	close(b.changed)
	b.changed = make(chan struct{})
	b.mu.Unlock()
}

func (b *eventBackend) EventsSince(seq uint64) ([]api.Event, bool, <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []api.Event
	for _, e := range b.evs {
		if e.Seq > seq && e.Seq > b.dropped {
			out = append(out, e)
		}
	}
	return out, seq < b.dropped && len(out) > 0, b.changed
}

// sseReader reads "id"/"event"/"data" records from a stream.
type sseReader struct{ rd *bufio.Reader }

func (s sseReader) next(t *testing.T) (id, event, data string) {
	t.Helper()
	for {
		line, err := s.rd.ReadString('\n')
		if err != nil {
			t.Fatalf("stream ended: %v", err)
		}
		line = strings.TrimRight(line, "\n")
		switch {
		case line == "" && (event != "" || data != ""):
			return id, event, data
		case strings.HasPrefix(line, "id: "):
			id = line[4:]
		case strings.HasPrefix(line, "event: "):
			event = line[7:]
		case strings.HasPrefix(line, "data: "):
			data = line[6:]
		}
	}
}

// Issue 19: /api/v1/events was poll-only. It streams (SSE) now, resumes
// after Last-Event-ID, says when events were dropped, and bounds the
// streams open at once.
func TestEventsStreamResumesAndReportsGaps(t *testing.T) {
	b := &eventBackend{changed: make(chan struct{}), dropped: 3}
	for seq := uint64(4); seq <= 7; seq++ {
		b.add(seq, fmt.Sprint("k", seq))
	}
	srv := httptest.NewServer(New(Options{Backend: b}))
	defer srv.Close()
	open := func(header, value string) (*http.Response, sseReader) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/api/v1/events", nil)
		req.Header.Set("Accept", "text/event-stream")
		if header != "" {
			req.Header.Set(header, value)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
			t.Fatalf("status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		return resp, sseReader{bufio.NewReader(resp.Body)}
	}
	resp, rd := open("Last-Event-ID", "5")
	for _, want := range []string{"6", "7"} {
		if id, ev, data := rd.next(t); id != want || ev != "event" || !strings.Contains(data, `"kind":"k`+want+`"`) {
			t.Fatalf("got id %q event %q data %q, want id %s", id, ev, data, want)
		}
	}
	go func() {
		time.Sleep(50 * time.Millisecond)
		b.add(8, "k8")
	}()
	if id, _, _ := rd.next(t); id != "8" {
		t.Fatalf("a new event: id %q", id)
	}
	resp.Body.Close()

	resp, rd = open("Last-Event-ID", "1")
	if _, ev, data := rd.next(t); ev != "gap" || data != `{"after":1,"next":4}` {
		t.Fatalf("resuming before what is kept: event %q data %q", ev, data)
	}
	if id, _, _ := rd.next(t); id != "4" {
		t.Fatalf("after the gap: id %q", id)
	}
	resp.Body.Close()

	// ?since without following: a list, oldest first.
	r, err := http.Get(srv.URL + "/api/v1/events?since=6")
	if err != nil {
		t.Fatal(err)
	}
	var body strings.Builder
	bufio.NewReader(r.Body).WriteTo(&body)
	r.Body.Close()
	if !strings.Contains(body.String(), `"seq": 7`) || strings.Contains(body.String(), `"seq": 6`) {
		t.Fatalf("since=6: %s", body.String())
	}
	if r, _ := http.Get(srv.URL + "/api/v1/events?since=x"); r.StatusCode != http.StatusBadRequest {
		t.Fatalf("since=x: %d", r.StatusCode)
	}

	var held []*http.Response
	defer func() {
		for _, r := range held {
			r.Body.Close()
		}
	}()
	for i := 0; i < maxStreams; i++ {
		r, _ := open("", "")
		held = append(held, r)
	}
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/api/v1/events?follow=1", nil)
	over, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	over.Body.Close()
	if over.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("stream %d: %d, want 503", maxStreams+1, over.StatusCode)
	}
}
