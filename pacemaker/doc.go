// Package pacemaker connects geobooth's tickets to a site's Pacemaker
// cluster, as Booth does: the ticket is granted and revoked in the local
// CIB with crm_ticket, so rsc_ticket constraints start and stop (or
// demote) the resources that need it.
//
// The CIB interface is the small set of operations geobooth needs; it has
// a crm_ticket implementation (the default when the tool is installed) and
// a no-op one for sites without Pacemaker. Driver puts policy on top: every
// call is serialised (a CIB file has no locking: concurrent writers lose
// updates) and time-limited, failures are logged, retried and counted, a
// revoke that keeps failing escalates (by default the daemon exits so the
// local cluster recovers or fences it), and on start the CIB's state is
// reconciled with what the cluster says.
//
// Pacemaker ignores the expires attribute; geobooth revokes before its
// lease ends. The package never decides who holds a ticket.
package pacemaker
