package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/geobooth/geobooth/api"
)

// cmdEvents prints the member's recent events, oldest first, or follows
// them as they happen (the API's event stream), resuming after the last
// one seen when the connection drops.
func cmdEvents(c *client, args []string, w io.Writer) error {
	fs := flag.NewFlagSet("events", flag.ContinueOnError)
	follow := fs.Bool("f", false, "follow: print events as they happen, until interrupted")
	since := fs.Uint64("since", 0, "only events after this seq (printed with --json)")
	count := fs.Int("count", 0, "with -f, stop after this many events (0: never)")
	asJSON := fs.Bool("json", false, "one JSON object per line")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return fail(2, "usage: events [-f] [--since SEQ] [--count N] [--json] (no arguments; %q is one too many)", pos[0])
	}
	print := func(e api.Event) error {
		if *asJSON {
			b, _ := json.Marshal(e)
			_, err := fmt.Fprintf(w, "%s\n", b)
			return err
		}
		_, err := fmt.Fprintln(w, eventLine(e))
		return err
	}
	if !*follow {
		var evs []api.Event
		if *since > 0 {
			err = c.call(http.MethodGet, "/api/v1/events?since="+strconv.FormatUint(*since, 10), nil, &evs)
		} else {
			err = c.call(http.MethodGet, "/api/v1/events", nil, &evs)
			for i, j := 0, len(evs)-1; i < j; i, j = i+1, j-1 {
				evs[i], evs[j] = evs[j], evs[i]
			}
		}
		if err != nil {
			return err
		}
		for _, e := range evs {
			if err := print(e); err != nil {
				return err
			}
		}
		return nil
	}
	cursor, seen := *since, 0
	wait := time.Second
	for {
		err := c.stream("/api/v1/events", cursor, func(kind string, data []byte) error {
			if kind == "gap" {
				fmt.Fprintln(w, "(events were dropped here: the member keeps only its most recent ones)")
				return nil
			}
			var e api.Event
			if err := json.Unmarshal(data, &e); err != nil {
				return fail(1, "bad event from %s: %v", c.base, err)
			}
			cursor = e.Seq
			if err := print(e); err != nil {
				return err
			}
			seen++
			if *count > 0 && seen >= *count {
				return errDone
			}
			wait = time.Second
			return nil
		})
		if err == errDone {
			return nil
		}
		if ee, ok := err.(*exitError); ok && ee.code != 3 {
			return err
		}
		// The daemon went away (a restart): resume after the last event.
		time.Sleep(wait)
		wait = min(2*wait, 30*time.Second)
	}
}

// errDone ends a stream on purpose.
var errDone = fmt.Errorf("done")

// eventLine is an event as one line of text.
func eventLine(e api.Event) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s  %-8s %-14s", e.Time.Local().Format("2006-01-02 15:04:05.000"), orDash(e.Ticket), e.Kind)
	if e.Term > 0 {
		fmt.Fprintf(&b, " term %d", e.Term)
	}
	if e.Owner != "" {
		fmt.Fprintf(&b, " owner %s", e.Owner)
	}
	if e.Reason != "" {
		fmt.Fprintf(&b, ": %s", e.Reason)
	}
	return b.String()
}

// stream reads Server-Sent Events from path after cursor and hands each
// to f, until the server closes, f fails, or the connection breaks (an
// exit error with code 3).
func (c *client) stream(path string, cursor uint64, f func(event string, data []byte) error) error {
	req, err := http.NewRequest(http.MethodGet, c.base+path, nil)
	if err != nil {
		return fail(2, "%v", err)
	}
	req.Header.Set("Accept", "text/event-stream")
	if cursor > 0 {
		req.Header.Set("Last-Event-ID", strconv.FormatUint(cursor, 10))
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	// No overall timeout: a stream lasts. The server sends a comment
	// every 15 s; a minute of silence is a dead connection.
	hc := *c.http
	hc.Timeout = 0
	resp, err := hc.Do(req)
	if err != nil {
		return fail(3, "cannot reach geoboothd at %s: %v (is it running?)", c.base, unwrapURLError(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fail(1, "GET %s: %s", path, resp.Status)
	}
	lines := make(chan string)
	errc := make(chan error, 1)
	done := make(chan struct{})
	defer close(done)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-done:
				return
			}
		}
		errc <- sc.Err()
	}()
	var event string
	var data []byte
	for {
		select {
		case line := <-lines:
			switch {
			case line == "":
				if data != nil {
					if err := f(event, data); err != nil {
						return err
					}
				}
				event, data = "", nil
			case strings.HasPrefix(line, "event: "):
				event = line[len("event: "):]
			case strings.HasPrefix(line, "data: "):
				data = []byte(line[len("data: "):])
			}
		case err := <-errc:
			return fail(3, "the event stream from %s ended: %v", c.base, err)
		case <-time.After(time.Minute):
			return fail(3, "the event stream from %s is silent", c.base)
		}
	}
}
