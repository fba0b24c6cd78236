// Package api holds the types of geoboothd's HTTP API: what the server
// answers, what the dashboard shows and what ticketctl reads. It is a
// leaf: it imports nothing of geobooth, so a client links none of the
// daemon's runtime (serf, the DNS server, the replication engine).
package api
