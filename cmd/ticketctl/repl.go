package main

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"text/tabwriter"
	"time"

	"github.com/geobooth/geobooth/api"
)

// cmdRepl shows the replicated volumes as the member asked sees them, or
// changes a volume's role (for the OCF agent and planned work), or starts
// an online verify against a peer.
func cmdRepl(c *client, args []string, w io.Writer) error {
	fs := flag.NewFlagSet("repl", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print JSON")
	repair := fs.Bool("repair", false, "verify: resync the blocks found different")
	noWait := fs.Bool("no-wait", false, "verify: start it and return (repl status follows it)")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	const use = "usage: repl [--json] | repl status VOLUME | repl promote|demote|invalidate|discard-my-data|skip-initial-sync VOLUME | repl resize VOLUME SIZE | repl verify [--repair] [--no-wait] VOLUME PEER"
	switch {
	case len(pos) == 0:
		var vs []api.Volume
		if err := c.call(http.MethodGet, "/api/v1/replication", nil, &vs); err != nil {
			return err
		}
		if *asJSON {
			return printJSON(w, vs)
		}
		return printVolumes(w, vs)
	case len(pos) == 2 && pos[0] == "status":
		var v api.Volume
		if err := c.call(http.MethodGet, "/api/v1/replication/"+pos[1], nil, &v); err != nil {
			return err
		}
		if *asJSON {
			return printJSON(w, v)
		}
		return printVolumes(w, []api.Volume{v})
	case len(pos) == 2 && (pos[0] == "promote" || pos[0] == "demote" || pos[0] == "invalidate" || pos[0] == "discard-my-data" || pos[0] == "skip-initial-sync"):
		var r api.CommandResult
		if err := c.call(http.MethodPost, "/api/v1/replication/"+pos[1]+"/"+pos[0], nil, &r); err != nil {
			return err
		}
		fmt.Fprintln(w, r.Detail)
		return nil
	case len(pos) == 3 && pos[0] == "resize":
		var r api.CommandResult
		if err := c.call(http.MethodPost, "/api/v1/replication/"+pos[1]+"/resize", api.ResizeRequest{Size: pos[2]}, &r); err != nil {
			return err
		}
		fmt.Fprintln(w, r.Detail)
		return nil
	case len(pos) == 3 && pos[0] == "verify":
		return replVerify(c, w, pos[1], pos[2], *repair, *noWait, *asJSON)
	}
	return fail(2, "%s", use)
}

// replVerify starts a verify of volume against peer and, unless noWait,
// follows it to its end.
func replVerify(c *client, w io.Writer, volume, peer string, repair, noWait, asJSON bool) error {
	var job api.VerifyJob
	if err := c.call(http.MethodPost, "/api/v1/replication/"+volume+"/verify", api.VerifyRequest{Peer: peer, Repair: repair}, &job); err != nil {
		return err
	}
	if noWait {
		fmt.Fprintf(w, "%s: verify against %s started (ticketctl repl status %s follows it)\n", volume, peer, volume)
		return nil
	}
	// The verify runs in the daemon; follow it however long it takes.
	for job.Running {
		time.Sleep(500 * time.Millisecond)
		var st api.Volume
		if err := c.call(http.MethodGet, "/api/v1/replication/"+volume, nil, &st); err != nil {
			return err
		}
		if st.Verify == nil || !st.Verify.Started.Equal(job.Started) {
			return fail(1, "%s: the verify was replaced by another", volume)
		}
		job = *st.Verify
	}
	if asJSON {
		return printJSON(w, job)
	}
	if job.Error != "" {
		return fail(1, "%s: verify against %s: %s (%d of %d blocks checked)", volume, job.Peer, job.Error, job.Checked, job.Total)
	}
	fmt.Fprintf(w, "%s: %d blocks checked against %s, %d different", volume, job.Checked, job.Peer, job.Differing)
	if job.Resynced {
		fmt.Fprint(w, " (resynced)")
	}
	fmt.Fprintln(w)
	if job.Differing > 0 && !job.Resynced {
		return fail(1, "%s differs from %s in %d blocks", volume, peer, job.Differing)
	}
	return nil
}

func printVolumes(w io.Writer, vs []api.Volume) error {
	if len(vs) == 0 {
		_, err := fmt.Fprintln(w, "no replicated volumes at this member (a site's are its [[volumes]]; an arbitrator holds none)")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VOLUME\tTICKET\tROLE\tDISK\tPEER\tLINK\tPEER DISK\tLAG\tRESYNC")
	for _, v := range vs {
		if len(v.Peers) == 0 {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t-\t-\t-\t-\t-\n", v.Volume, orDash(v.Ticket), v.Role, v.Disk)
		}
		for _, p := range v.Peers {
			lag := fmt.Sprintf("%dB/%.2fs", p.LagBytes, p.LagSeconds)
			resync := "-"
			if p.ResyncTotal > 0 {
				resync = fmt.Sprintf("%.0f%%", 100*float64(p.ResyncTotal-p.ResyncRemaining)/float64(p.ResyncTotal))
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", v.Volume, orDash(v.Ticket), v.Role, v.Disk,
				p.Name, p.State, orDash(string(p.PeerDisk)), lag, resync)
		}
		if v.SplitBrains > 0 {
			fmt.Fprintf(tw, "%s\tSPLIT BRAIN: %d detected, %d blocks discarded here\t\t\t\t\t\t\t\n", v.Volume, v.SplitBrains, v.Discarded)
		}
		if j := v.Verify; j != nil {
			fmt.Fprintf(tw, "%s\t%s\t\t\t\t\t\t\t\n", v.Volume, verifyLine(*j))
		}
	}
	return tw.Flush()
}

// verifyLine says how the running (or last) verify of a volume stands.
func verifyLine(j api.VerifyJob) string {
	pct := 100 * float64(j.Checked) / float64(max(j.Total, 1))
	switch {
	case j.Running:
		return fmt.Sprintf("VERIFY against %s: %.0f%% (%d of %d blocks), %d different so far, since %s", j.Peer, pct, j.Checked, j.Total, j.Differing, j.Started.Format(time.TimeOnly))
	case j.Error != "":
		return fmt.Sprintf("VERIFY against %s failed at %.0f%%: %s", j.Peer, pct, j.Error)
	}
	line := fmt.Sprintf("VERIFY against %s done: %d blocks, %d different", j.Peer, j.Checked, j.Differing)
	if j.Resynced {
		line += ", resynced"
	}
	return line
}
