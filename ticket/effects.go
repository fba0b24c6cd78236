package ticket

import (
	"errors"
	"time"
)

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
