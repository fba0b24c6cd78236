// Package mutation holds the switches that remove one safety mechanism of
// the ticket protocol or of its runtime engine each. Only the simulator's
// mutation tests set them: each test removes one mechanism and checks
// that the simulator finds a violation, which shows both that the
// mechanism is needed and that the simulator can fail. The package is
// internal to ticket/, so nothing outside the protocol's core can name it.
package mutation

import "time"

// Set is a set of removed mechanisms; the zero value removes none.
type Set struct {
	// NoDriftMargin: the owner uses the whole expire as its lease.
	NoDriftMargin bool
	// NoRestartAbstention: a restarted member votes and acquires at once.
	NoRestartAbstention bool
	// LastSendTiming: the owner times its lease from the last transmission
	// of a request instead of the first.
	LastSendTiming bool
	// AckTiming: the owner times its lease from the majority's
	// acknowledgement, as Booth does, instead of the first transmission.
	AckTiming bool
	// IgnorePromises: a member acknowledges any site whatever it promised.
	IgnorePromises bool
	// NoSlackMargin: the owner's stop is not brought forward by the timer
	// slack.
	NoSlackMargin bool
	// NoStopTimeoutMargin: the owner's stop is not brought forward by
	// stop_timeout (only by the timer slack).
	NoStopTimeoutMargin bool
	// GrantWhileReleasing: a grant is accepted while a release of ours is
	// still stopping the resources.
	GrantWhileReleasing bool
	// VotesNotPersisted: a vote changes the durable state in memory only.
	VotesNotPersisted bool
	// IgnorePersistFailure (engine): a ticket whose state could not be
	// written sends and acts as if it had been.
	IgnorePersistFailure bool
	// StopLatency (engine): every stop reaches the resources this long
	// after the state machine asked for it.
	StopLatency time.Duration
	// ObserverTrustsRenewals: a member that does not hold the ticket acts
	// on the owner for as long as its own view of the lease runs (less a
	// fixed margin), as if every renewal it saw had been granted.
	ObserverTrustsRenewals bool
	// UnagedMessages (engine): messages that waited for their state to be
	// written leave with the remaining times they were made with.
	UnagedMessages bool
}
