package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	tc "github.com/geobooth/geobooth/internal/testcluster"
)

// scenarioNoPlaintext captures every packet between the
// sites, the arbitrator and the client while the client writes through
// east's export, west replicates it, and ticketctl uses the API with its
// token: neither the data nor the token appears in the capture (issue 17:
// nothing crosses sites in clear).
func scenarioNoPlaintext(t *testing.T, n *network, report func(string, ...any)) {
	tcpdump := tc.RequireTool(t, "tcpdump", "tcpdump")
	g, mon := begin(t, n, "east")
	pcap := filepath.Join(t.TempDir(), "bridge.pcap")
	// Frames forwarded between the bridge's ports do not show on the
	// bridge itself: capture on every interface (the host ends of the
	// veth links), but not this host's loopback, where the tests of other
	// packages, running at the same time, call their APIs in clear.
	dump := exec.Command(tcpdump, "-i", "any", "-U", "-s", "0", "-w", pcap, "not net 127.0.0.0/8 and not ip6 host ::1")
	if err := dump.Start(); err != nil {
		t.Fatal(err)
	}
	tc.Eventually(t, 10*time.Second, func() error {
		if st, err := os.Stat(pcap); err != nil || st.Size() == 0 {
			return fmt.Errorf("tcpdump has not started writing %s", pcap)
		}
		return nil
	})
	// 64 KiB of one byte: in ciphertext no run of 64 equal bytes survives.
	if out, err := qemuIO("east", false, "write -P 0xa7 8M 64k", "flush"); err != nil {
		t.Fatalf("write through east: %v\n%s", err, out)
	}
	g.waitVolume("east", 30*time.Second, "primary in sync", primaryInSync)
	// ticketctl from the client's side of the bridge: its request carries
	// the token.
	if out, err := inNS("client", filepath.Join(tc.Binaries(t), "ticketctl"), "-config", g.Member("east").Config, "list"); err != nil {
		t.Fatalf("ticketctl list from the client: %v\n%s", err, out)
	}
	dump.Process.Signal(syscall.SIGINT)
	dump.Wait()
	b, err := os.ReadFile(pcap)
	if err != nil {
		t.Fatal(err)
	}
	// The write crossed twice (client → east, east → west): the capture
	// must hold at least that much, or it saw nothing.
	if len(b) < 2*64<<10 {
		t.Fatalf("the capture holds %d bytes: tcpdump did not see the traffic", len(b))
	}
	if bytes.Contains(b, bytes.Repeat([]byte{0xa7}, 64)) {
		t.Error("the written data crossed the bridge in clear")
	}
	token, err := os.ReadFile(filepath.Join(g.host["east"], "api.token"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, bytes.TrimSpace(token)) {
		t.Error("the API token crossed the bridge in clear")
	}
	if i := bytes.Index(b, []byte("/api/v1/tickets")); i >= 0 {
		t.Errorf("an API request crossed the bridge in clear: %q", printable(b[max(0, i-300):min(len(b), i+200)]))
	}
	if w := g.replica("west")[8<<20 : 8<<20+64<<10]; !bytes.Equal(w, bytes.Repeat([]byte{0xa7}, 64<<10)) {
		t.Error("west does not hold the write")
	}
	report("no plaintext between the members: %d bytes captured on the links while writing 64 KiB through east and calling the API; no data, token or request in clear", len(b))
	finish(t, g, mon)
}

// printable keeps the text of a capture's bytes, for a failure message.
func printable(b []byte) string {
	out := make([]byte, 0, len(b))
	for _, c := range b {
		if c >= 32 && c < 127 || c == '\n' {
			out = append(out, c)
		} else {
			out = append(out, '.')
		}
	}
	return string(out)
}
