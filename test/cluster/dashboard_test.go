package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	tc "github.com/geobooth/geobooth/internal/testcluster"
)

// Issue 17, F7: with read_token the page and the data it fetched were open
// to anyone, and the dashboard's own fetches carried no token. Now the
// page comes without data and asks for the token; with it, the page
// fills and refreshes from the API.
func TestDashboardWithReadTokenAsksForItAndThenShowsTheState(t *testing.T) {
	c := tc.New(t, tc.Spec{
		Members: []tc.MemberSpec{{Name: "east", Role: "site"}, {Name: "west", Role: "site"}, {Name: "arbitrator", Role: "arbitrator"}},
		Tickets: exampleTickets,
		API:     "read_token = true\n",
	})
	t.Cleanup(func() {
		if t.Failed() {
			c.DumpLogs()
		}
	})
	c.StartAll()
	east := c.Member("east")
	if _, errOut, code := east.Ctl("grant", "-s", "east", "web"); code != 0 && !strings.Contains(errOut, "granted to west instead") {
		t.Fatalf("grant: %s", errOut)
	}
	if body, err := east.Get("/api/v1/tickets"); err != nil || !strings.Contains(body, "bearer token") {
		t.Fatalf("the API read without a token: %v %s", err, body)
	}
	b := tc.NewBrowser(t, 1280, 800, true)
	b.Open(east.URL("/"))
	owner := `#tickets tr[data-ticket="web"] td.owner`
	tc.Eventually(t, 10*time.Second, func() error {
		var res struct {
			Value bool `json:"value"`
		}
		b.Script(`return document.getElementById("login").open;`, &res)
		if !res.Value {
			return errors.New("the page does not ask for the token")
		}
		return nil
	})
	if got := b.Texts(owner); len(got) != 0 {
		t.Fatalf("the page shows state without the token: %q", got)
	}
	if got := b.Texts("#members td.name"); len(got) != 0 {
		t.Fatalf("the page shows members without the token: %q", got)
	}
	tok, _ := json.Marshal(c.Token)
	b.Script(fmt.Sprintf(`document.getElementById("login-token").value = %s; document.getElementById("login").close("ok"); return true;`, tok), nil)
	tc.Eventually(t, 10*time.Second, func() error {
		if got := b.Texts(owner); len(got) != 1 || (got[0] != "east" && got[0] != "west") {
			return fmt.Errorf("owner cell = %q", got)
		}
		if got := b.Texts("#members td.name"); strings.Join(got, ",") != "east,west,arbitrator" {
			return fmt.Errorf("members = %q", got)
		}
		return nil
	})
}
