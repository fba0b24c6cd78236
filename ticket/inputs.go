package ticket

import (
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
