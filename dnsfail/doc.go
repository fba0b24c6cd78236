// Package dnsfail is the authoritative DNS server every geobooth member
// runs for the failover zones: clients find the service through a name
// whose answer is the address of the site holding the ticket.
//
// A zone is an RFC 1035 zone file (SOA, NS, static records) plus failover
// names. A failover name answers the targets of the site that holds its
// ticket with a valid lease, as this member sees it, filtered by health;
// its TTL is at most the configured one and never reaches past the lease.
// A member that does not hold the ticket stops answering with the owner
// when the owner's own lease can have ended (the view's end less the
// drift margin and a ticket timeout for the renewal's time in transit and
// in queues), so no answer, cached for its TTL, outlives the lease.
// Without a valid owner the name answers no data, or the fallback the
// operator named; when every target of the owner is down it answers them
// anyway (fail-open inside the ticket, the default), the fallback, or no
// data. It never answers the targets of a site that does not hold the
// ticket.
//
// Health checks (tcp://, http(s)://, smtp://, icmp://) start when the
// configuration loads, run on every member with jitter, and go up after
// rise successes and down after fall failures; a check with no result yet
// is unknown, which serves the owner. Members share their states through
// serf; a target is down when a quorum of the vantage points that know
// (default: a majority) says so.
//
// The server answers as an authoritative server must: AA on in-zone
// answers, REFUSED without AA outside its zones, NXDOMAIN and NODATA
// (empty non-terminals too) with the SOA at min(SOA TTL, MINIMUM), in-zone
// CNAME chains, referrals below delegations, EDNS0 (1232 advertised,
// BADVERS), TC on UDP answers that do not fit and full TCP service, one
// RRset for ANY (RFC 8482), the query's spelling echoed. Zones transfer
// by AXFR over TCP only (IXFR answered in full), to the configured
// addresses and TSIG key; the serial changes with the zone's content, is
// the same at every member for the same content (serial.go), and never
// goes back; NOTIFY goes to the configured secondaries and a
// TSIG-signed RFC 2136 UPDATE to an external primary, each retried until
// acknowledged.
//
// Worst-case time until clients use the new site after an unplanned
// failover: the ticket's failover time (see the README) plus the TTL;
// after a target fails: (interval + timeout) × fall + the TTL.
package dnsfail
