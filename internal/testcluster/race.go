//go:build race

package testcluster

// raceEnabled: the tests run with -race, so the daemons are built with it
// too and their races show up in their logs.
const raceEnabled = true
