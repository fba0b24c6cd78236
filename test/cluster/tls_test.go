package cluster

import (
	"bytes"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	tc "github.com/geobooth/geobooth/internal/testcluster"
)

// Issue 17, F2 and F8: the API token and the replicated data crossed in
// clear. With [tls] the API is HTTPS with the member's certificate (curl
// --cacert and ticketctl verify it against the cluster's CA), and the
// replication between the sites is mutual TLS.
func TestAPIAndReplicationOverTLS(t *testing.T) {
	curl := tc.RequireTool(t, "curl", "curl")
	c := newDataClusterTLS(t, "", true)
	c.grantEast(t)
	east := c.Member("east")

	out, err := exec.Command(curl, "-sS", "--fail", "--cacert", c.CA, east.URL("/api/v1/tickets/web")).CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"owner": "east"`) {
		t.Fatalf("curl --cacert: %v\n%s", err, out)
	}
	// Without the CA the certificate is not trusted; over plain HTTP the
	// server answers nothing.
	if out, err := exec.Command(curl, "-sS", "--fail", east.URL("/api/v1/tickets")).CombinedOutput(); err == nil {
		t.Fatalf("curl trusted the member's certificate without the CA:\n%s", out)
	}
	if out, err := exec.Command(curl, "-sS", "--fail", "--max-time", "5", "http://"+east.API+"/api/v1/tickets").CombinedOutput(); err == nil {
		t.Fatalf("the API answered plain HTTP:\n%s", out)
	}
	// ticketctl finds the CA in the member's file.
	if outS, errOut, code := east.Ctl("list"); code != 0 || !strings.Contains(outS, "web") {
		t.Fatalf("ticketctl list over HTTPS: %d %s%s", code, outS, errOut)
	}

	// Data written at east reaches west over the mutual TLS link.
	pattern := "write -P 0x5a 1M 64k"
	if o, err := qemuIO(t, c.nbd["east"], false, pattern, "flush"); err != nil {
		t.Fatalf("qemu-io: %v\n%s", err, o)
	}
	c.waitVolume(t, "east", 10*time.Second, "primary in sync", primaryInSync)
	tc.Eventually(t, 10*time.Second, func() error {
		if !bytes.Equal(c.image(t, "east")[1<<20:1<<20+64<<10], c.image(t, "west")[1<<20:1<<20+64<<10]) {
			return errors.New("west does not hold east's write yet")
		}
		return nil
	})
	if st := c.status(t, "west"); len(st.Peers) != 1 || st.Peers[0].LastError != "" {
		t.Fatalf("west's link: %+v", st.Peers)
	}
}
