package ticket

import (
	"fmt"
	"time"
)

// MsgType is the kind of a peer message.
type MsgType uint8

// Peer message kinds. The numbers are part of the wire format.
const (
	// MsgVoteReq asks for a vote (and a lease) in a new term.
	MsgVoteReq MsgType = iota + 1
	// MsgVoteResp grants or refuses it.
	MsgVoteResp
	// MsgRenew is the owner's heartbeat: it renews the lease (auto) or
	// announces the owner (manual, forced grants).
	MsgRenew
	// MsgRenewAck acknowledges (OK) or refuses a renewal.
	MsgRenewAck
	// MsgRelease says the owner has stopped its resources and gives the
	// ticket up (revoke, move, failed handler).
	MsgRelease
	// MsgReleaseAck acknowledges a release.
	MsgReleaseAck
	// MsgGrantReq forwards an operator's grant to the site that should
	// acquire.
	MsgGrantReq
	// MsgRevokeReq forwards an operator's revoke to the owner.
	MsgRevokeReq
	// MsgMoveReq forwards an operator's move to the owner.
	MsgMoveReq
	// MsgAttrs carries ticket attributes (all of them, last writer wins).
	MsgAttrs
	// MsgAttrsAck acknowledges MsgAttrs.
	MsgAttrsAck
	// MsgSyncReq asks a member for its durable view of the ticket, after a
	// restart.
	MsgSyncReq
	// MsgSyncResp answers it.
	MsgSyncResp
	msgTypeEnd
)

var msgTypeNames = [...]string{"?", "VoteReq", "VoteResp", "Renew", "RenewAck", "Release", "ReleaseAck",
	"GrantReq", "RevokeReq", "MoveReq", "Attrs", "AttrsAck", "SyncReq", "SyncResp"}

func (t MsgType) String() string {
	if int(t) < len(msgTypeNames) {
		return msgTypeNames[t]
	}
	return fmt.Sprintf("MsgType(%d)", uint8(t))
}

// Reason says why an election is run, or why a request was refused.
type Reason uint8

// Election reasons (in MsgVoteReq).
const (
	ReasonNone Reason = iota
	// ReasonAuto: automatic acquisition after a lost lease.
	ReasonAuto
	// ReasonGrant: an operator's grant.
	ReasonGrant
	// ReasonForce: an operator's forced grant; voters skip their promises.
	ReasonForce
	// ReasonMove: the previous owner handed the ticket to this site.
	ReasonMove
	// ReasonReassert: the owner renews in a higher term after learning of
	// one.
	ReasonReassert
	// ReasonRestart: a restarted owner asks to keep the ticket it held.
	ReasonRestart
	// ReasonAbort (in MsgRelease): a candidate gave up an election it did not
	// win; voters forget the promise they gave it.
	ReasonAbort
)

// Refusal reasons (in MsgVoteResp and MsgRenewAck when OK is false).
const (
	RefuseStaleTerm Reason = iota + 20
	RefuseVoted
	RefusePromised
	RefuseRestarting
	RefuseNotGranted
	RefuseNotSite
	RefuseOwned
	// RefuseStopping: a holder's lease just ended, and its resources may
	// still be stopping for acquire_after.
	RefuseStopping
)

var reasonNames = map[Reason]string{
	ReasonNone: "none", ReasonAuto: "auto", ReasonGrant: "grant", ReasonForce: "force",
	ReasonMove: "move", ReasonReassert: "reassert", ReasonRestart: "restart", ReasonAbort: "abort",
	RefuseStaleTerm: "stale term", RefuseVoted: "already voted in this term",
	RefusePromised: "lease promised to another site", RefuseRestarting: "restarting",
	RefuseNotGranted: "ticket not granted", RefuseNotSite: "not a site",
	RefuseOwned: "held by another site", RefuseStopping: "the last holder may still be stopping",
}

func (r Reason) String() string {
	if s, ok := reasonNames[r]; ok {
		return s
	}
	return fmt.Sprintf("Reason(%d)", uint8(r))
}

// Flags are booleans carried by messages.
type Flags uint8

// Message flags.
const (
	// FlagManual marks a message about a manual ticket.
	FlagManual Flags = 1 << iota
	// FlagRevoke marks a release that revokes the ticket.
	FlagRevoke
	// FlagForce marks a forced operator request.
	FlagForce
	// FlagManaged says the sender counts the ticket as granted.
	FlagManaged
	// FlagAttrsDiffer asks the receiver to exchange attributes.
	FlagAttrsDiffer
	// FlagGranted marks a renewal that a majority already granted, sent
	// again to say how long the owner now acts as such: receivers learn
	// that and nothing else (no answer, no promise).
	FlagGranted
)

// Attr is one ticket attribute with its last-writer-wins version.
type Attr struct {
	Name    string
	Value   string
	Version uint64
	Writer  uint16
	Deleted bool
}

// Limits on attributes, so a full set fits one datagram.
const (
	MaxAttrs        = 32
	MaxAttrNameLen  = 63
	MaxAttrValueLen = 255
)

// Message is a peer message. Which fields mean something depends on Type;
// Term is always the sender's current term.
type Message struct {
	Type   MsgType
	Ticket string
	Term   uint64
	From   int
	To     int
	// Round matches answers to requests.
	Round  uint64
	Reason Reason
	Flags  Flags
	// OK: the vote is granted, the renewal or release acknowledged.
	OK bool
	// Site: the candidate or owner concerned, the target of a move or grant,
	// or, in refusals, the site the sender knows as owner (-1: none).
	Site int
	// Remaining: in refusals, how long the sender's promise still runs.
	Remaining time.Duration
	// Acked: in refusals and sync answers, whom the sender acknowledged in
	// its term (-1: nobody).
	Acked int
	// AttrDigest summarises the sender's attributes (MsgRenew, MsgRenewAck).
	AttrDigest uint64
	// Attrs: the full set (MsgAttrs, MsgSyncResp).
	Attrs []Attr
}

func (m Message) String() string {
	s := fmt.Sprintf("%s %s %d→%d t%d r%x", m.Type, m.Ticket, m.From, m.To, m.Term, m.Round)
	if m.Type == MsgVoteResp || m.Type == MsgRenewAck || m.Type == MsgReleaseAck || m.Type == MsgAttrsAck {
		if m.OK {
			s += " ok"
		} else {
			s += " refused(" + m.Reason.String() + ")"
		}
	} else if m.Reason != ReasonNone {
		s += " " + m.Reason.String()
	}
	if m.Site >= 0 {
		s += fmt.Sprintf(" site=%d", m.Site)
	}
	return s
}
