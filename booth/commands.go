package booth

import (
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/geobooth/geobooth/api"
)

// AcceptCommands lets the status listener of a site take grant and
// revoke (ticketctl's, in geobooth's API shape) from callers that present
// token as a bearer token; set before Handler. They are handed to the
// site's engine as Booth's client's would be on Booth's port.
func (s *Server) AcceptCommands(token string) { s.token = token }

// commandWait bounds how long a command's answer waits for Booth's
// outcome (the status listener's writes time out after 10 s); ticketctl
// then follows the ticket.
const commandWait = 8 * time.Second

// command serves POST /api/v1/tickets/{name}/grant or /revoke at a site
// that accepts commands: the answer comes once Booth's outcome is known
// (success, the commit pending for a lease, or a refusal), or says the
// command is under way after commandWait.
func (s *Server) command(cmd Code) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(s.token)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="geobooth"`)
			commandAnswer(w, http.StatusUnauthorized, api.CommandResult{Error: "missing or wrong bearer token"})
			return
		}
		var body struct {
			Site  string `json:"site"`
			Force bool   `json:"force"`
		}
		if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&body); err != nil && err != io.EOF {
			commandAnswer(w, http.StatusBadRequest, api.CommandResult{Error: "bad request body: " + err.Error()})
			return
		}
		self := s.arb.self.Address.String()
		switch {
		case cmd == CmdGrant && body.Site != "" && body.Site != self:
			commandAnswer(w, http.StatusConflict, api.CommandResult{Error: fmt.Sprintf("a Booth site grants a ticket to itself only: ask %s (ticketctl -addr at its status listener, or booth grant -s %s)", body.Site, body.Site)})
			return
		case cmd == CmdClientRevoke && body.Force:
			commandAnswer(w, http.StatusConflict, api.CommandResult{Error: "Booth's protocol has no revoke at one member only: revoke at the site that holds the ticket"})
			return
		}
		s.mu.Lock()
		running := s.ctx != nil
		s.mu.Unlock()
		if !running {
			// The status listener opens before Booth's port: nothing can
			// be asked of the engine before it runs.
			commandAnswer(w, http.StatusServiceUnavailable, api.CommandResult{Error: "starting: ask again in a moment"})
			return
		}
		m := Message{Header: Header{Cmd: cmd}, HasTicket: true, Ticket: Ticket{Name: r.PathValue("name")}}
		if body.Force {
			m.Options |= OptionForce
		}
		last, wt := s.ask(m)
		if wt != nil {
			s.follow(r.Context(), m.Ticket.Name, wt, min(s.waitLimit(m.Ticket.Name), commandWait), func(a Message) bool { last = a; return true })
		}
		code, res := s.outcome(cmd, last)
		commandAnswer(w, code, res)
	}
}

// outcome is Booth's last answer to a grant or revoke as an HTTP answer.
func (s *Server) outcome(cmd Code, m Message) (int, api.CommandResult) {
	what := map[Code]string{CmdGrant: "granted", CmdClientRevoke: "revoked"}[cmd]
	leader := "another site"
	if l, ok := s.arb.members[m.Ticket.Leader]; ok {
		leader = l.Address.String()
	}
	switch m.Result {
	case 0, ResultSuccess:
		return http.StatusOK, api.CommandResult{OK: true, Detail: what}
	case ResultPending:
		return http.StatusAccepted, api.CommandResult{OK: true, Detail: "elected here; the CIB is granted once every site answered, or after expire + acquire-after (grant -F skips that wait)"}
	case ResultIdle:
		return http.StatusOK, api.CommandResult{OK: true, Detail: "not granted"}
	case ResultMore:
		return http.StatusAccepted, api.CommandResult{OK: true, Detail: fmt.Sprintf("under way (no outcome within %v): ticketctl list shows it", commandWait)}
	case ResultOver:
		return http.StatusConflict, api.CommandResult{Error: "held by " + leader + ": revoke it there first"}
	case ResultRedirect:
		return http.StatusConflict, api.CommandResult{Error: leader + " leads it: revoke there"}
	case ResultInvalid:
		if _, known := s.arb.byName[m.Ticket.Name]; !known {
			return http.StatusNotFound, api.CommandResult{Error: fmt.Sprintf("no ticket %q", m.Ticket.Name)}
		}
	}
	verb := map[Code]string{CmdGrant: "grant", CmdClientRevoke: "revoke"}[cmd]
	return http.StatusConflict, api.CommandResult{Error: fmt.Sprintf("%s refused: %s", verb, label(m.Result))}
}

func commandAnswer(w http.ResponseWriter, code int, v api.CommandResult) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
