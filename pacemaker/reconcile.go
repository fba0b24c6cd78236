package pacemaker

import (
	"fmt"
	"time"
)

// Action is what to do about a ticket granted in the local CIB.
type Action int

// Reconciliation actions.
const (
	// Keep: nothing to do.
	Keep Action = iota
	// RevokeNow: the CIB grants a ticket this site must not hold.
	RevokeNow
	// RevokeAt: the CIB grants the ticket under a lease of ours that may
	// still run; revoke when it ends unless the site holds it again.
	RevokeAt
)

func (a Action) String() string {
	return [...]string{"keep", "revoke now", "revoke at lease end"}[a]
}

// Reconcile decides what to do about what the CIB says of a ticket at
// start (or when the cluster's view arrives). clusterOwner is the owner the
// ticket protocol reports ("" when none is known yet). It is a pure
// function: Driver carries it out.
func Reconcile(cib TicketState, local, clusterOwner string, now time.Time) (Action, time.Time, string) {
	switch {
	case !cib.Granted:
		return Keep, time.Time{}, "not granted in the CIB"
	case clusterOwner != "" && clusterOwner != local:
		return RevokeNow, time.Time{}, fmt.Sprintf("granted in the CIB but %s holds it", clusterOwner)
	case clusterOwner == local:
		return Keep, time.Time{}, "granted here and held here"
	case cib.Owner != "" && cib.Owner != local:
		return RevokeNow, time.Time{}, fmt.Sprintf("granted in the CIB for %s", cib.Owner)
	case cib.Expires.IsZero():
		return RevokeNow, time.Time{}, "granted in the CIB without a recorded lease end"
	case !cib.Expires.After(now):
		return RevokeNow, time.Time{}, fmt.Sprintf("granted in the CIB under a lease that ended at %s", cib.Expires.Format(time.RFC3339))
	default:
		return RevokeAt, cib.Expires, fmt.Sprintf("granted in the CIB under our lease until %s", cib.Expires.Format(time.RFC3339))
	}
}
