// Package node is the runtime around the ticket state machines of one
// geoboothd: one goroutine owns every ticket's State and feeds it peer
// datagrams, clock ticks, operator commands and the results of the work it
// asked for; it carries out the effects in order (persisting with fsync
// before any message of the same step is sent) and sends the messages.
//
// Everything slow runs beside the loop and reports back as an input: the
// local resources (Pacemaker, through the Resources interface), the
// before-acquire handler (a process with Booth's environment and a
// timeout), and the preparation of a planned handover (Handover). The
// loop itself never blocks on them.
//
// The clock is injected (Clock): the state machines see a monotonic
// duration, the wire and the operator see wall time.
package node
