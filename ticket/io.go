package ticket

import (
	"errors"
	"time"
)

// None is the member index meaning "nobody".
const None = -1

// Input is what drives Step: one of Boot, Receive, Tick, Command,
// HandlerDone, HandoverDone, Stopped.
type Input interface{ isInput() }

// Boot starts (or restarts) the member. Persisted is the durable state read
// back from disk, or nil on a first boot or a wiped disk. Seed seeds the
// member's pseudo-random source (election jitter, round identifiers).
//
// Running says the site's resources were found running (the ticket
// granted in the local CIB) at start, as after a restart of the daemon
// alone; LeaseEnd is the local instant the lease they run under ends, as
// recorded there (0: none recorded). The state machine keeps them only
// while that lease of its own may last, and stops them otherwise.
type Boot struct {
	Persisted *Persistent
	Seed      uint64
	Running   bool
	LeaseEnd  time.Duration
}

// Receive delivers an authenticated peer message.
type Receive struct{ Msg Message }

// Tick lets timers fire; the runtime ticks at NextTimer or sooner.
type Tick struct{}

// Op is an operator command.
type Op uint8

// Operator commands.
const (
	OpGrant Op = iota + 1
	OpRevoke
	OpMove
	OpAttrSet
	OpAttrDelete
	// OpRelease: the owner gives the ticket up without revoking it (its
	// site cannot run the service); another site may acquire it.
	OpRelease
)

func (o Op) String() string {
	switch o {
	case OpGrant:
		return "grant"
	case OpRevoke:
		return "revoke"
	case OpMove:
		return "move"
	case OpAttrSet:
		return "attr set"
	case OpAttrDelete:
		return "attr delete"
	case OpRelease:
		return "release"
	}
	return "op?"
}

// Command is an operator's request, answered by a Reply effect with the
// same ID.
type Command struct {
	ID    uint64
	Op    Op
	Site  int // grant: the site to acquire; move: the target
	Force bool
	Attr  string
	Value string
}

// HandlerDone reports the before-acquire handler's result for Token.
type HandlerDone struct {
	Token uint64
	OK    bool
	// Why it failed (a local check's refusal, a handler's exit), for the
	// ticket's reason and the operator.
	Detail string
}

// HandoverDone reports whether the owner is ready to hand over (services
// stopped, data drained) for the move with Token.
type HandoverDone struct {
	Token uint64
	OK    bool
}

// Stopped reports that the resources were stopped for Token.
type Stopped struct{ Token uint64 }

func (Boot) isInput()         {}
func (Receive) isInput()      {}
func (Tick) isInput()         {}
func (Command) isInput()      {}
func (HandlerDone) isInput()  {}
func (HandoverDone) isInput() {}
func (Stopped) isInput()      {}

// Effect is work Step asks the runtime to do. The runtime carries out the
// effects of one Step in order, and sends that Step's messages only after
// every Persist effect is durable (fsync): a vote or acknowledgement must
// never leave before the state that makes it safe.
type Effect interface{ isEffect() }

// Persist asks for the durable state to be written and synced.
type Persist struct{ State Persistent }

// StartResources grants the ticket locally (Pacemaker: crm_ticket -g).
// LeaseEnd is the local monotonic instant the lease ends (0 for a manual
// ticket, which has none). Forced: acquired through an operator's forced
// grant.
type StartResources struct {
	Term     uint64
	LeaseEnd time.Duration
	Forced   bool
}

// LeaseRenewed reports a renewed lease (Pacemaker: the expires attribute).
type LeaseRenewed struct {
	Term     uint64
	LeaseEnd time.Duration
}

// StopResources revokes the ticket locally. The runtime answers with
// Stopped{Token} once the resources are down. Deadline is the local
// instant by which they must be: the lease they ran under ends then (or,
// without one, stop_timeout has passed; 0: no deadline, stop_timeout is
// not set). A stop that is not done by then must be escalated
// (on_revoke_failure), so the local cluster stops them.
type StopResources struct {
	Token    uint64
	Reason   string
	Deadline time.Duration
}

// HandlerKind says when the before-acquire handler runs.
type HandlerKind uint8

// Handler occasions.
const (
	HandlerAcquire HandlerKind = iota + 1
	HandlerRenew
)

// RunHandler runs the before-acquire handler (and the runtime's own
// checks); the runtime answers with HandlerDone{Token}. Force marks an
// operator's forced grant: checks that protect against bad data may be
// skipped, as the operator took the responsibility.
type RunHandler struct {
	Token uint64
	Kind  HandlerKind
	Force bool
}

// PrepareHandover asks the runtime to get ready to hand the ticket to To
// (stop services, drain replication); it answers HandoverDone{Token}.
type PrepareHandover struct {
	Token uint64
	To    int
}

// Reply answers the Command with ID. Err is nil when the command was
// carried out or is under way (a waiting grant, a forwarded request).
type Reply struct {
	ID     uint64
	Err    error
	Detail string
}

// EventKind classifies Event effects.
type EventKind uint8

// Events worth a log line and a place on the dashboard's timeline.
const (
	EvAcquired EventKind = iota + 1
	EvRenewed
	EvLost
	EvReleased
	EvRevoked
	EvGranted
	EvMoved
	EvMoveAborted
	EvOwnerChanged
	EvForced
	EvHandlerFailed
	EvYielded
	EvSynced
)

var eventNames = map[EventKind]string{
	EvAcquired: "acquired", EvRenewed: "renewed", EvLost: "lost", EvReleased: "released",
	EvRevoked: "revoked", EvGranted: "granted", EvMoved: "moved", EvMoveAborted: "move aborted",
	EvOwnerChanged: "owner changed", EvForced: "forced", EvHandlerFailed: "handler failed",
	EvYielded: "yielded", EvSynced: "synced",
}

func (k EventKind) String() string { return eventNames[k] }

// Event is a state change to log: one line with ticket, term, owner and
// reason.
type Event struct {
	Kind   EventKind
	Term   uint64
	Owner  int
	Reason string
}

func (Persist) isEffect()         {}
func (StartResources) isEffect()  {}
func (LeaseRenewed) isEffect()    {}
func (StopResources) isEffect()   {}
func (RunHandler) isEffect()      {}
func (PrepareHandover) isEffect() {}
func (Reply) isEffect()           {}
func (Event) isEffect()           {}

// Errors carried by Reply effects.
var (
	ErrNotSite        = errors.New("only a site can hold a ticket")
	ErrHeldElsewhere  = errors.New("ticket is held by another site: use move")
	ErrNotOwner       = errors.New("this member does not hold the ticket")
	ErrNoOwner        = errors.New("ticket has no owner")
	ErrNotGranted     = errors.New("ticket is not granted")
	ErrBusy           = errors.New("another operation on this ticket is under way")
	ErrPrereq         = errors.New("attr_prereq not met")
	ErrBadAttr        = errors.New("invalid attribute")
	ErrTooManyAttrs   = errors.New("too many attributes")
	ErrAlreadyOwner   = errors.New("the target already holds the ticket")
	ErrNotStarted     = errors.New("member not started")
	ErrUnknownCommand = errors.New("unknown command")
)
