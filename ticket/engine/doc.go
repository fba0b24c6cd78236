// Package engine is the runtime of one member's tickets, as a
// deterministic state machine around ticket.Step: it owns every ticket's
// State, the timers (woken on a grid, once for many tickets), the pacing
// of elections, the order in which durable state, effects and messages
// leave, and the deadlines of stops. It has no goroutines, reads no clock
// and does no I/O: the shell (internal/node) feeds it inputs with the
// current time and carries out what Ready returns; the simulator drives
// it the same way.
//
// # Invariants
//
//   - Durability first. A ticket whose state changed sends no message and
//     starts nothing (StartResources, LeaseRenewed, RunHandler,
//     PrepareHandover) until that state is on disk. A write that fails is
//     retried, with a backoff up to a second, for as long as it takes;
//     meanwhile the ticket is silent, as a crashed member would be, and a
//     vote is never sent from memory. Stops, replies and events do not
//     wait: a stop is always safe, and the others change nothing.
//   - Stops first. Ready lists stops apart from every other effect, so
//     the shell starts them before anything else and never queues them
//     behind grants, renewals or another ticket's write. A stop cancels
//     the ticket's starts and renewals that still wait for a write.
//   - Stops have deadlines. Each stop carries the instant the core set
//     for it (the end of the lease it ran under). A stop the shell has not
//     reported done by then is escalated (Ready.Escalations), so the
//     local cluster stops the resources (on_revoke_failure).
//   - Configuration changes are safe or refused. Each ticket's record
//     names members, not indexes, and keeps the mode, the cluster digest
//     and how long a promise may bind (ticket.Persistent.Binding). Boot
//     refuses a changed member list or a changed mode of a granted
//     ticket, saying what to do; a changed expire is covered by the
//     restart window of the longer binding.
//   - Elections are paced: at most a window of elections of this member's
//     own run at once. The window grows with elections won and halves
//     (once per round of elections) when an election goes unanswered or
//     the shell reports that datagrams were dropped, between 4 and
//     max_elections; the others wait their turn, oldest first.
package engine
