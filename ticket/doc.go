// Package ticket is geobooth's lease protocol: a pure, deterministic state
// machine per member and ticket, after Booth (boothd(8)), plus the binary
// codec of its peer messages.
//
// # What it owns
//
// Step(state, input, now) → (state, messages, effects). Inputs are a peer
// message (Receive), a clock tick (Tick), an operator command (Command:
// grant, grant with force, revoke, move, attribute set/delete), results of
// work it asked for (HandlerDone, HandoverDone, Stopped) and the state read
// back at start (Boot). It does no I/O, reads no clock, starts no goroutine
// and draws no randomness of its own: now is the member's monotonic clock,
// and a seed given at Boot drives election jitter. The runtime carries out
// effects in order and makes every Persist durable before it sends the
// messages of the same Step.
//
// # The protocol
//
// Sites and arbitrators all vote; a majority grants; only sites hold. A
// member that acknowledges a site (a vote, or a renewal from the owner)
// promises it: for expire on its own clock from when it received the
// request, it acknowledges no other site. A site that gathers a majority of
// votes in a new term holds the ticket, and renews every renewal_freq with a
// heartbeat a majority must acknowledge. Each request is re-sent every
// timeout, up to retries times.
//
// The owner counts its lease from the first transmission of the last
// acknowledged request, s, and must have stopped its resources by
//
//	s + expire·(1−d)/(1+d) − stop_timeout·(1+d) − slack      (its own clock)
//
// where d is max_clock_drift and slack is how late the runtime may tick
// (Config.TimerSlack: it wakes once for the timers of many tickets). Every acknowledging member received the
// request after s and honours it for expire on a clock that runs at most
// 1+d times too fast, that is for at least expire/(1+d) real seconds after
// s; the owner's bound, read on a clock at most 1−d too slow, ends before.
//
// A member that restarts has lost its timers. With its durable state
// (term, whom it acknowledged in that term, owner, whether the ticket is
// granted, attributes) it acknowledges, for expire·(1+d), only the site it
// last acknowledged, the only one a forgotten promise could be for. Without
// it (a wiped disk, or a first boot) it acknowledges nobody and acquires
// nothing for expire·(1+d).
//
// Safety, never two holders at one real instant, follows: a holder's lease
// rests on a majority that promised it for longer than the holder believes;
// any other site needs a majority too; the two majorities share a member,
// which cannot have promised both at once. The package's simulator and
// explorer check this after every step, on beliefs and on resources.
//
// Only granted, not revoked, tickets are managed. In auto mode a site whose
// view of the lease ran out waits acquire_after more, plus its rank among
// the sites (weights, then configuration order) times timeout, and then
// asks for votes; in manual mode nothing moves without the operator, a
// vote binds until the owner releases, and a forced grant takes the ticket
// at once in a higher term (the old holder yields when it hears of it).
// revoke and move end a lease only through the owner: it stops its
// resources, then releases; for a move the target acquires at once. An
// election that fails is retried after (1 + rank)·timeout plus a random
// delay whose window doubles with each failure in a row, up to 16
// timeouts, so that thousands of tickets failing over together do not
// retry into the same storm of datagrams.
//
// # Failover time
//
// When the owner dies right after a renewal, the others take over after
//
//	(expire + acquire_after)/(1−d) + rank·timeout + timeout/2 + one round trip
//
// at most (plus one retry when a voter's promise runs a little longer than
// the candidate's view); when it dies just before a renewal, renewal_freq
// less. With the example cluster (expire 10 s, acquire_after 2 s, timeout
// 1 s, d = 1 %) that is at most about 12.7 s.
//
// # Wire format and authentication
//
// Encode and Decode implement version 1 of the peer datagram (see codec.go):
// a fixed header, the body, and an HMAC-SHA256 with the shared key (8 to 64
// bytes). ReplayFilter refuses datagrams older than max_time_skew and
// replays. Decode never panics; it is fuzzed.
package ticket
