// Package node is the shell around the ticket engine (ticket/engine) of
// one geoboothd: it owns the sockets, the store, the workers and the real
// timers, and the engine decides everything else. One goroutine (Run)
// owns the engine: it feeds it peer datagrams, operator commands, timer
// ticks and the results of the work it asked for, and carries out what
// the engine's Ready returns, in its order: the write of changed states
// goes to the store's goroutine (its result comes back as an input), the
// stops to the front of their tickets' workers, the other effects next,
// the messages last. The engine releases a ticket's messages and starts
// only once its state is on disk.
//
// Nothing slow runs on the loop, and the loop never waits for a worker:
// the resource calls (Pacemaker and the volumes, through Resources) run
// on a worker per ticket whose queue a stop jumps, the before-acquire
// handler (a process with Booth's environment and a timeout) and the
// preparation of a planned handover (Handover) on goroutines of their own.
//
// The clock is injected (Clock): the engine sees a monotonic duration,
// the wire and the operator see wall time.
package node
