package ticket

import (
	"fmt"
	"strings"
	"time"

	"github.com/geobooth/geobooth/kit/confkit"
	"github.com/geobooth/geobooth/ticket/internal/mutation"
)

// Mode says who moves a ticket: the protocol (Auto) or only the operator
// (Manual).
type Mode uint8

// Ticket modes, as Booth's `mode` setting.
const (
	Auto Mode = iota
	Manual
)

func (m Mode) String() string {
	if m == Manual {
		return "manual"
	}
	return "auto"
}

// ParseMode reads "auto" or "manual" (any case, as Booth accepts "MANUAL").
func ParseMode(s string) (Mode, error) {
	switch strings.ToLower(s) {
	case "", "auto", "automatic":
		return Auto, nil
	case "manual":
		return Manual, nil
	}
	return Auto, fmt.Errorf("mode %q: want auto or manual", s)
}

// Role is what a member is: a site can hold tickets, an arbitrator only
// votes.
type Role uint8

// Member roles.
const (
	Site Role = iota
	Arbitrator
)

func (r Role) String() string {
	if r == Arbitrator {
		return "arbitrator"
	}
	return "site"
}

// Member is one voter of the cluster.
type Member struct {
	Name string
	Role Role
	// Weight orders sites for conflicting requests: a higher weight acquires
	// first; equal weights fall back to configuration order (Booth's rule).
	Weight int
}

// Cluster is the static membership every member agrees on, and which of
// them is this one. Member indexes are the identities used on the wire.
type Cluster struct {
	Members []Member
	Self    int
}

// Quorum is the number of acknowledgements (the member's own included) that
// make a majority.
func (c *Cluster) Quorum() int { return len(c.Members)/2 + 1 }

// syncNeeded is how many other members must answer a member that lost its
// state before it may vote on a manual ticket: enough that the answers meet
// every majority that could have granted it (N-Q+1).
func (c *Cluster) syncNeeded() int { return len(c.Members) - c.Quorum() + 1 }

// Index returns the index of the member with that name, or -1.
func (c *Cluster) Index(name string) int {
	for i, m := range c.Members {
		if m.Name == name {
			return i
		}
	}
	return -1
}

// Name returns the member's name, or "" for -1.
func (c *Cluster) Name(i int) string {
	if i < 0 || i >= len(c.Members) {
		return ""
	}
	return c.Members[i].Name
}

// IsSite reports whether member i may hold tickets.
func (c *Cluster) IsSite(i int) bool {
	return i >= 0 && i < len(c.Members) && c.Members[i].Role == Site
}

// Validate checks the membership: names unique and non-empty, at most 64
// members, at least one site, Self in range.
func (c *Cluster) Validate() error {
	if len(c.Members) == 0 {
		return fmt.Errorf("cluster has no members")
	}
	if len(c.Members) > MaxMembers {
		return fmt.Errorf("cluster has %d members; at most %d are supported", len(c.Members), MaxMembers)
	}
	seen := map[string]bool{}
	sites := 0
	for _, m := range c.Members {
		if m.Name == "" {
			return fmt.Errorf("a member has no name")
		}
		if seen[m.Name] {
			return fmt.Errorf("member %q is listed twice", m.Name)
		}
		seen[m.Name] = true
		if m.Role == Site {
			sites++
		}
	}
	if sites == 0 {
		return fmt.Errorf("cluster has no site: only sites can hold tickets")
	}
	if c.Self < 0 || c.Self >= len(c.Members) {
		return fmt.Errorf("local member index %d out of range", c.Self)
	}
	return nil
}

// MaxMembers bounds the cluster size (acknowledgements are a 64-bit set).
const MaxMembers = 64

// AttrPrereq is Booth's attr-prereq: before acquiring in the given mode
// (automatic failover or manual grant) the ticket attribute Name must equal
// (or, with Negate, differ from) Value at the acquiring site.
type AttrPrereq struct {
	// Auto: applies to automatic acquisition; otherwise to operator grants.
	Auto   bool
	Name   string
	Negate bool
	Value  string
}

// ParseAttrPrereq reads "auto|manual NAME eq|ne VALUE".
func ParseAttrPrereq(s string) (AttrPrereq, error) {
	f := strings.Fields(s)
	if len(f) != 4 {
		return AttrPrereq{}, fmt.Errorf("attr_prereq %q: want \"auto|manual NAME eq|ne VALUE\"", s)
	}
	var p AttrPrereq
	switch strings.ToLower(f[0]) {
	case "auto":
		p.Auto = true
	case "manual":
	default:
		return AttrPrereq{}, fmt.Errorf("attr_prereq %q: grant type %q is not auto or manual", s, f[0])
	}
	switch f[2] {
	case "eq":
	case "ne":
		p.Negate = true
	default:
		return AttrPrereq{}, fmt.Errorf("attr_prereq %q: operator %q is not eq or ne", s, f[2])
	}
	p.Name, p.Value = f[1], f[3]
	return p, nil
}

func (p AttrPrereq) String() string {
	kind, op := "manual", "eq"
	if p.Auto {
		kind = "auto"
	}
	if p.Negate {
		op = "ne"
	}
	return kind + " " + p.Name + " " + op + " " + p.Value
}

// Config holds one ticket's settings. Zero durations mean "Booth's
// default"; call WithDefaults before Validate.
type Config struct {
	Name string
	Mode Mode
	// Expire is the lease length (Booth default 600 s).
	Expire time.Duration
	// RenewalFreq is how often the owner renews (default: the larger of
	// Expire/2 and Timeout*Retries/2, as Booth computes it).
	RenewalFreq time.Duration
	// AcquireAfter is the extra wait after a lease is lost before another
	// site acquires, so the old site can stop its resources (default 0).
	AcquireAfter time.Duration
	// Timeout is the retransmission interval (default 5 s).
	Timeout time.Duration
	// Retries is how many times a message is re-sent (default 10, at least 3).
	Retries int
	// MaxClockDrift is the bound d on any member's clock rate error (0.01 =
	// 1 %); it sizes the owner's safety margin.
	MaxClockDrift float64
	// StopTimeout is how long the site's resources may take to stop; the
	// owner starts stopping them that much before its lease ends.
	StopTimeout time.Duration
	// TimerSlack is how late after NextTimer's instant the runtime may
	// tick: it wakes once for the timers of many tickets. The owner begins
	// stopping that much earlier, so a late tick still stops in time.
	TimerSlack time.Duration
	// BeforeAcquireHandler, when set, is run (by the runtime) before
	// acquiring and before every renewal; a failure relinquishes.
	BeforeAcquireHandler []string
	// LocalChecks: the runtime has checks of its own to run before
	// acquiring and renewing (a replica that must be in a good state), so
	// RunHandler effects come even without a handler program.
	LocalChecks bool
	// AttrPrereqs must all hold before acquiring.
	AttrPrereqs []AttrPrereq
	// Weights, when set, has one entry per member (configuration order) and
	// overrides the members' own weights for this ticket.
	Weights []int

	// Mutations remove safety mechanisms for the simulator's mutation
	// tests (see package mutation); never set outside them.
	Mutations mutation.Set `json:"-"`
}

// Booth's defaults.
const (
	DefaultExpire        = 600 * time.Second
	DefaultTimeout       = 5 * time.Second
	DefaultRetries       = 10
	DefaultMaxClockDrift = 0.01
	MinRetries           = 3
	MaxNameLen           = 63
	// MaxDrift bounds max_clock_drift: beyond 10 % the margin eats the lease.
	MaxDrift = 0.1
	// MaxTimerSlack is the timer slack a runtime takes at most (see
	// SlackFor).
	MaxTimerSlack = 5 * time.Millisecond
)

// SlackFor returns the timer slack for a ticket with this timeout:
// MaxTimerSlack, or a twentieth of the timeout when that is shorter, so
// that retransmissions stay close to their schedule.
func SlackFor(timeout time.Duration) time.Duration {
	return min(MaxTimerSlack, timeout/20)
}

// DefaultConfig returns a ticket's defaults, Booth's where Booth has the
// setting: a loader sets the file's settings over it, then Resolved
// derives the rest.
func DefaultConfig(name string) Config {
	return Config{Name: name, Expire: DefaultExpire, Timeout: DefaultTimeout, Retries: DefaultRetries, MaxClockDrift: DefaultMaxClockDrift}
}

// Resolved returns the config with the settings whose defaults derive
// from others filled in where left zero: renewal_freq (half the expiry,
// or more when the retransmissions need it, as Booth), the timer slack
// (SlackFor) and stop_timeout (DefaultStopTimeout).
func (c Config) Resolved() Config {
	if c.RenewalFreq == 0 {
		c.RenewalFreq = c.Expire / 2
		if r := c.Timeout * time.Duration(c.Retries) / 2; r > c.RenewalFreq {
			c.RenewalFreq = r
		}
	}
	if c.TimerSlack == 0 {
		c.TimerSlack = SlackFor(c.Timeout)
	}
	if c.StopTimeout == 0 {
		c.StopTimeout = c.DefaultStopTimeout()
	}
	return c
}

// DefaultHandlerTimeout bounds a before-acquire handler's run when the
// ticket's handler_timeout is not set: half the renewal interval, so that
// a hung handler fails the renewal it runs for, not the lease.
func (c *Config) DefaultHandlerTimeout() time.Duration { return c.RenewalFreq / 2 }

// checks reports whether acquiring and renewing wait for RunHandler.
func (c *Config) checks() bool { return len(c.BeforeAcquireHandler) > 0 || c.LocalChecks }

// LeaseLength is how long, on its own clock, an owner may consider its lease
// valid after the first transmission of an acknowledged request:
// expire·(1−d)/(1+d). Every acknowledging member honours the lease for
// expire on its clock from when it received the request, which is later in
// real time and, with clock rates within 1±d, never shorter.
func (c *Config) LeaseLength() time.Duration {
	if c.Mutations.NoDriftMargin {
		return c.Expire
	}
	d := c.MaxClockDrift
	return time.Duration(float64(c.Expire) * (1 - d) / (1 + d))
}

// observerTrust is how long, on its own clock from when it processed it,
// a member may act on an owner whose renewal said it would act as the
// owner (its lease less the stop's lead) for rem more on its own clock
// when it was sent: rem·(1−d)/(1+d), the least
// that is in real time on the member's clock, less one ticket timeout for
// the renewal's time in flight (a renewal that takes longer is late, as
// the protocol's timing assumes everywhere).
func (c *Config) observerTrust(rem time.Duration) time.Duration {
	d := c.MaxClockDrift
	return time.Duration(float64(rem)*(1-d)/(1+d)) - c.Timeout
}

// stopBudget is how long, on the member's own clock, its resources may
// take to stop: stop_timeout of real time, on a clock up to 1+d fast.
func (c *Config) stopBudget() time.Duration { return c.stretched(c.StopTimeout) }

// stopLead is how long before its lease ends the owner begins stopping:
// the time its resources may take, plus how late its tick may come.
func (c *Config) stopLead() time.Duration {
	lead := c.stopBudget() + c.TimerSlack
	if c.Mutations.NoSlackMargin {
		lead -= c.TimerSlack
	}
	if c.Mutations.NoStopTimeoutMargin {
		lead -= c.stopBudget()
	}
	return lead
}

// DefaultStopTimeout is stop_timeout when it is not set (or 0): half of what the
// lease leaves after a renewal and its retransmissions, so that an owner
// whose renewals fail still stops well before its lease ends, and a stop
// under way is escalated only when it takes far longer than that.
func (c *Config) DefaultStopTimeout() time.Duration {
	room := c.LeaseLength() - c.RenewalFreq - c.Timeout - c.TimerSlack
	if room <= 0 {
		return 0
	}
	return time.Duration(float64(room) / (1 + c.MaxClockDrift) / 2).Round(time.Millisecond)
}

// CrashMargin is how long, in real time, the resources of an owner whose
// daemon died may go on running after its lease without meeting a new
// owner's: every member refuses another site for acquire_after after a
// holder's lease (on a clock up to 1+d fast). A site's guard (the
// ticket-guard agent's monitor interval plus its stop) must fit in it.
func (c *Config) CrashMargin() time.Duration {
	return time.Duration(float64(c.AcquireAfter) / (1 + c.MaxClockDrift))
}

// binding is how long a promise binds the member that gave it: expire,
// plus acquire_after for a promise to a holder.
func (c *Config) binding() time.Duration { return c.Expire + c.AcquireAfter }

// stretched returns x lengthened by the drift bound, x·(1+d): a wait that
// must cover at least x of another member's clock.
func (c *Config) stretched(x time.Duration) time.Duration {
	return time.Duration(float64(x) * (1 + c.MaxClockDrift))
}

// Validate reports every problem with the settings, keyed by their names
// in the configuration file. members is the cluster size (for weights).
func (c *Config) Validate(members int) []confkit.FieldError {
	var errs []confkit.FieldError
	bad := func(key, format string, args ...any) { errs = append(errs, confkit.Errorf(key, format, args...)) }
	if c.Name == "" || len(c.Name) > MaxNameLen {
		bad("name", "%q: a ticket name has 1 to %d characters", c.Name, MaxNameLen)
	}
	for _, r := range c.Name {
		if r <= ' ' || r > '~' || r == '/' {
			bad("name", "%q: only printable ASCII without spaces or '/'", c.Name)
			break
		}
	}
	if c.Expire <= 0 {
		bad("expire", "must be positive")
	}
	if c.Timeout <= 0 {
		bad("timeout", "must be positive")
	}
	if c.Retries < MinRetries {
		bad("retries", "%d: must be at least %d (Booth refuses fewer)", c.Retries, MinRetries)
	}
	if c.MaxClockDrift < 0 || c.MaxClockDrift > MaxDrift {
		bad("max_clock_drift", "%g: must be between 0 and %g", c.MaxClockDrift, MaxDrift)
	}
	if c.AcquireAfter < 0 {
		bad("acquire_after", "must not be negative")
	}
	if c.StopTimeout < 0 {
		bad("stop_timeout", "must not be negative")
	}
	if c.TimerSlack < 0 || (c.Timeout > 0 && c.TimerSlack >= c.Timeout) {
		bad("timer_slack", "%v: must be at least 0 and shorter than timeout (%v)", c.TimerSlack, c.Timeout)
	}
	if c.RenewalFreq <= 0 || c.RenewalFreq >= c.Expire {
		bad("renewal_freq", "%v: must be positive and shorter than expire (%v)", c.RenewalFreq, c.Expire)
	}
	if total := c.Timeout * time.Duration(c.Retries+1); c.Retries >= MinRetries && c.Timeout > 0 && total >= c.RenewalFreq {
		bad("timeout", "timeout*(retries+1) = %v*%d = %v: must be shorter than renewal_freq (%v)", c.Timeout, c.Retries+1, total, c.RenewalFreq)
	}
	if c.Expire > 0 && c.MaxClockDrift >= 0 && c.MaxClockDrift <= MaxDrift {
		budget := c.RenewalFreq + c.Timeout + c.stopBudget() + c.TimerSlack
		if budget >= c.LeaseLength() {
			bad("stop_timeout", "renewal_freq + timeout + stop_timeout·(1+d) + timer slack = %v: must be shorter than the owner's lease expire·(1−d)/(1+d) = %v, or the owner stops before it can renew", budget, c.LeaseLength())
		}
	}
	if c.Weights != nil && len(c.Weights) != members {
		bad("weights", "%d values for %d members", len(c.Weights), members)
	}
	for i, p := range c.AttrPrereqs {
		if p.Name == "" {
			bad(fmt.Sprintf("attr_prereq.%d", i), "empty attribute name")
		}
	}
	return errs
}
