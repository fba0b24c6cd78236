package ticket

import (
	"math"
	"time"
)

// Persistent is the part of a member's ticket state that must survive a
// restart. It is written (Persist effect) before any message that depends on
// it is sent.
type Persistent struct {
	// Term is the highest term this member took part in.
	Term uint64
	// Acked is the site this member voted for or acknowledged in Term
	// (None: nobody). Any promise the member may have given, and forgotten
	// in a crash, was to this site.
	Acked int
	// Owner is the last owner this member knew of (None: none).
	Owner int
	// Managed: the ticket is granted and not revoked, so the cluster
	// manages it (Booth's rule).
	Managed bool
	// Attrs are the ticket attributes (sorted by name).
	Attrs []Attr
	// AttrClock is the highest attribute version seen (a Lamport clock).
	AttrClock uint64
	// Binding is how long, on this member's clock, a promise it gave may
	// still bind it: expire plus acquire_after under the configuration it
	// ran with, or a longer one from before a configuration change while
	// its restart window lasts. A restart abstains for at least this long
	// (stretched by the drift bound), so shortening expire in a rolling
	// change never cuts short a promise given under the old one.
	Binding time.Duration
}

func (p Persistent) clone() Persistent {
	p.Attrs = append([]Attr(nil), p.Attrs...)
	return p
}

// holding is what this member is doing about the ticket itself.
type holding uint8

const (
	follower holding = iota
	// candidate: a vote round of ours is under way.
	candidate
	// owner: we hold the ticket (until StopAt for an auto ticket).
	owner
)

// round is one request sent to every other member, re-sent every Timeout
// up to Retries times, until enough members answer.
type round struct {
	Active    bool
	ID        uint64
	Term      uint64
	Reason    Reason
	Flags     Flags
	Site      int
	FirstSent time.Duration
	NextSend  time.Duration
	Sends     int
	Acks      uint64
	Nacks     uint64
	// NotGranted: members that refused because the ticket is not granted.
	NotGranted uint64
}

func (r *round) acked(i int) bool  { return r.Acks&(1<<uint(i)) != 0 }
func (r *round) nacked(i int) bool { return r.Nacks&(1<<uint(i)) != 0 }

// State is one member's state for one ticket. Step takes a State and
// returns a new one; a State is a value and may be copied (its slices are
// copied on write).
type State struct {
	cfg *Config
	cl  *Cluster

	// P is the durable part.
	P Persistent

	booted bool
	// windowUntil ends the restart window: before it, a member restarted
	// with its state acknowledges only its persisted Acked site, and a
	// member that lost its state acknowledges nobody.
	windowUntil time.Duration
	wiped       bool
	// syncFrom counts answers to MsgSyncReq; a member that lost its state
	// takes no part in a manual ticket until enough have come.
	syncFrom uint64
	synced   bool
	nextSync time.Duration

	// promise: we acknowledged promiseTo and will not acknowledge another
	// site before promiseUntil (on our clock).
	promiseTo    int
	promiseUntil time.Duration
	promiseHeard time.Duration
	// promiseHeld: the promise is to a holder (we acknowledged a renewal),
	// not only to a candidate (a vote). A promise to a holder goes on
	// binding us for acquire_after once it ends: the holder's resources
	// may still be stopping (a dead daemon's guard).
	promiseHeld bool
	// binding: what Persistent.Binding is while the restart window lasts.
	binding time.Duration

	// view: what we know of the current owner, for display and for
	// deciding when a lost lease may be taken.
	viewOwner   int
	viewTerm    uint64
	viewExpires time.Duration
	viewHeard   time.Duration
	viewSince   time.Duration
	// trustUntil: until when we may act on the owner of the view, which
	// told us in its own renewal how long its lease still ran (trustOwner
	// in trustTerm; see observerTrust).
	trustOwner int
	trustTerm  uint64
	trustUntil time.Duration

	hold holding
	// heldTerm is the term of the lease we hold or last held; a release
	// names it, so it cannot cancel promises given in a later term.
	heldTerm uint64
	leaseEnd time.Duration // owner: our lease ends (own clock)
	stopAt   time.Duration // owner: stop resources here
	running  bool          // resources started and not yet told to stop

	nextRenew  time.Duration
	reassert   bool
	elect      round
	renew      round
	release    round
	attrs      round
	highTerm   uint64
	retryAfter time.Duration
	// failed counts elections lost in a row since an owner was last
	// seen: each one doubles the window the next retry is spread over.
	failed int

	// acquireAt: when this site will next try to acquire (0: not planned).
	acquireAt     time.Duration
	acquireReason Reason
	acquireForce  bool
	// lostOwner is the site whose lease we last saw run out (it tries last).
	lostOwner int
	// handedTo: we released the ticket to this site (a move); we do not
	// contend with it before handedUntil, so it can take over. Not a view:
	// nothing shows it as the owner before it says so itself.
	handedTo    int
	handedUntil time.Duration
	// restartStop: resources found running at boot under a lease of ours
	// are stopped here unless we hold the ticket again by then (0: none).
	restartStop  time.Duration
	restartLease time.Duration

	handlerToken uint64
	handlerKind  HandlerKind
	// paced: the runtime holds this ticket's elections back for now
	// (too many of its own under way); AcquireDue stays true meanwhile.
	paced bool
	// unanswered: our last election ended without a majority answering
	// in time (no refusal either): the voters, or the way to them, may
	// be overloaded.
	unanswered bool

	moveTo       int
	moveToken    uint64
	stopToken    uint64
	afterStop    afterStop
	relFlags     Flags
	relSite      int
	lastChange   time.Duration
	lastReason   string
	rng          uint64
	seq          uint64
	tokens       uint64
	restartOwner bool
}

// afterStop says what to do once resources stopped on our own initiative.
type afterStop uint8

const (
	afterNothing afterStop = iota
	afterRelease
)

// NewState returns the state of a member that has not booted yet. Feed it
// a Boot input first.
func NewState(cfg *Config, cl *Cluster) State {
	return State{cfg: cfg, cl: cl, P: Persistent{Acked: None, Owner: None},
		promiseTo: None, viewOwner: None, trustOwner: None, moveTo: None, relSite: None, lostOwner: None, handedTo: None}
}

// Config returns the ticket's settings.
func (s *State) Config() *Config { return s.cfg }

// forever stands for "no end" (manual tickets).
const forever = time.Duration(math.MaxInt64)

// Forever is the duration with no end that views and messages carry for a
// manual ticket.
const Forever = forever

// View is what a member reports about a ticket.
type View struct {
	Ticket string
	Mode   Mode
	// Owner is the site holding the ticket as this member knows it (None).
	Owner int
	Term  uint64
	// HeldLocally: this member holds it and its lease is valid.
	HeldLocally bool
	// LeaseRemaining is how long the owner's lease still runs as this member
	// sees it (0 for none, forever for a manual ticket).
	LeaseRemaining time.Duration
	Managed        bool
	State          string
	// Expires: the local monotonic instant the lease ends as seen here.
	Expires time.Duration
	// SafeUntil is until when this member may act on Owner — answer DNS
	// with it, report it as the holder to a client that acts on it — on
	// its own clock: at the holder, until it begins to stop (its lease's
	// end less the stop's lead); at any other member, until that instant
	// as the owner last reported it in a renewal, less the drift and
	// delay margins (0 until one arrives); forever for a manual ticket; 0
	// without an owner.
	SafeUntil  time.Duration
	LastChange time.Duration
	Reason     string
	Attrs      []Attr
}

// View returns the member's view of the ticket at now.
func (s *State) View(now time.Duration) View {
	v := View{Ticket: s.cfg.Name, Mode: s.cfg.Mode, Owner: None, Term: s.P.Term, Managed: s.P.Managed,
		LastChange: s.lastChange, Reason: s.lastReason}
	for _, a := range s.P.Attrs {
		if !a.Deleted {
			v.Attrs = append(v.Attrs, a)
		}
	}
	switch {
	case s.hold == owner && now < s.stopAt:
		v.Owner, v.HeldLocally, v.Term = s.cl.Self, true, s.P.Term
		v.Expires, v.SafeUntil = s.leaseEnd, s.stopAt
		v.LeaseRemaining = remaining(s.leaseEnd, now)
	case s.viewOwner != None && s.viewOwner != s.self() && now < s.viewExpires:
		v.Owner, v.Term, v.Expires = s.viewOwner, s.viewTerm, s.viewExpires
		v.LeaseRemaining = remaining(s.viewExpires, now)
		v.SafeUntil = s.safeUntil()
	}
	switch {
	case !s.booted:
		v.State = "starting"
	case !s.P.Managed && v.Owner == None:
		if s.P.Term == 0 {
			v.State = "never granted"
		} else {
			v.State = "revoked"
		}
	case v.Owner != None:
		v.State = "granted"
	case s.hold == candidate:
		v.State = "acquiring"
	case s.acquireAt > 0 && s.cfg.Mode == Auto:
		v.State = "waiting"
	default:
		v.State = "lost"
	}
	if v.Owner == None && s.P.Managed && (now < s.windowUntil && !s.manual() || s.manual() && s.wiped && !s.synced) {
		v.State = "restarting"
	}
	return v
}

// safeUntil is until when we may act on the owner of our view: for ever
// for a manual ticket; for an auto ticket, until the end of the lease its
// owner last reported, discounted for drift and delay (observerTrust).
// Our own view of the lease is no measure of that: a renewal shows that
// the owner held the ticket when it sent it, not that a majority granted
// the extension it asks for.
func (s *State) safeUntil() time.Duration {
	switch {
	case s.viewExpires == forever:
		return forever
	case s.trustOwner != s.viewOwner || s.trustTerm != s.viewTerm:
		return 0
	case s.cfg.Mutations.ObserverTrustsRenewals:
		return s.viewExpires - (s.cfg.Expire - s.cfg.LeaseLength() + s.cfg.Timeout)
	}
	return min(s.trustUntil, s.viewExpires)
}

func remaining(end, now time.Duration) time.Duration {
	if end == forever {
		return forever
	}
	if end <= now {
		return 0
	}
	return end - now
}

// Holds reports whether this member holds the ticket at now (its own view,
// which the simulator checks for safety).
func (s *State) Holds(now time.Duration) bool { return s.hold == owner && now < s.stopAt }

// ResourcesRunning reports whether this member has started its resources
// (or found them running at boot) and not yet asked for them to stop.
func (s *State) ResourcesRunning() bool { return s.running }

// MayAcknowledge reports whether this member would acknowledge site c at
// now, as far as its promises, its restart window, a manual ticket's lock
// and its own holding go (term rules aside). The simulator checks with it
// that while a site holds the ticket or runs its resources, no other site
// could gather a majority.
func (s *State) MayAcknowledge(c int, now time.Duration) bool {
	if !s.booted {
		return false
	}
	if c != s.self() && (s.hold != follower || s.running) {
		return false
	}
	why, _ := s.refusal(c, false, now)
	return why == 0
}

// NextTimer returns the earliest local instant after now at which a Tick
// may change the state; the runtime should tick then (ticking earlier is
// harmless). ok is false when no timer is set. Step lets timers due at its
// own now fire, so nothing at or before now is left pending.
func (s *State) NextTimer(now time.Duration) (t time.Duration, ok bool) {
	t = forever
	set := func(x time.Duration) {
		if x > now && x < t {
			t = x
		}
	}
	for _, r := range []*round{&s.elect, &s.renew, &s.release, &s.attrs} {
		if r.Active {
			set(r.NextSend)
		}
	}
	if s.hold == owner || s.restartOwner {
		set(s.stopAt)
		set(s.nextRenew)
	}
	set(s.acquireAt)
	set(s.windowUntil)
	if s.manual() && s.wiped && !s.synced {
		set(s.nextSync)
	}
	if s.promiseTo != None {
		set(s.promiseUntil)
		set(s.promiseTail())
	}
	if s.running && s.hold != owner {
		set(s.restartStop)
	}
	if s.handedTo != None {
		set(s.handedUntil)
	}
	if s.viewOwner != None {
		set(s.viewExpires)
	}
	return t, t != forever
}

// Electing reports whether an election of this member's own is under way
// (not an owner's reassertion).
func (s *State) Electing() bool { return s.hold == candidate && s.elect.Active }

// ElectionUnanswered reports whether the last election of ours ended
// because no majority answered in time (rather than refusing): the
// runtime takes it as a sign of overload and paces its elections down.
func (s *State) ElectionUnanswered() bool { return s.unanswered }

// Pace holds the ticket's automatic elections back (hold) or lets them go:
// the runtime paces how many of its own run at once. An operator's grant
// is not held back.
func (s *State) Pace(hold bool) { s.paced = hold }

// Acquiring reports whether an acquisition of this member's own is under
// way: its before-acquire checks, then its election.
func (s *State) Acquiring() bool {
	return s.Electing() || s.handlerToken != 0 && s.handlerKind == HandlerAcquire
}

// AcquireDue reports whether a tick at now would start an election here.
// The runtime may hold such a tick back while many elections of its own
// are under way: the ticket then simply tries a little later.
func (s *State) AcquireDue(now time.Duration) bool {
	return s.hold == follower && s.acquireAt > 0 && now >= s.acquireAt && !s.elect.Active && s.handlerToken == 0
}

// rand returns the next pseudo-random number (splitmix64), from the seed
// given at Boot.
func (s *State) rand() uint64 {
	s.rng += 0x9e3779b97f4a7c15
	z := s.rng
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// jitter returns a pseudo-random duration in [0, max).
func (s *State) jitter(max time.Duration) time.Duration {
	if max <= 0 {
		return 0
	}
	return time.Duration(s.rand() % uint64(max))
}
