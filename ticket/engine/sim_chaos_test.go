package engine

import (
	"strconv"
	"time"

	"github.com/geobooth/geobooth/ticket"
)

// What goes wrong in the simulated world: partitions, crashes (with and
// without the disk), failing disks, clock rates that change, and an
// operator who issues commands, forced ones included.

func (s *sim) chaos() {
	n := len(s.ms)
	p := s.p
	switch r := s.rnd.Float64(); {
	case r < p.partitionP:
		s.partition()
	case r < p.partitionP+p.crashP:
		m := s.ms[s.rnd.Intn(n)]
		if !m.up {
			return
		}
		s.crash(m, "chaos")
		down := s.randDur(2 * p.cfg.Tickets[0].Expire)
		wipe := s.chance(p.wipeP)
		inc := m.inc
		s.at(down, func() {
			if !m.up && m.inc == inc && !s.healed {
				s.boot(m, wipe)
			}
		})
	case r < p.partitionP+p.crashP+p.diskP:
		m := s.ms[s.rnd.Intn(n)]
		m.diskBadUntil = s.now + s.randDur(2*p.cfg.Tickets[0].Expire)
		s.logf("%s DISK read-only for %v", s.name(m.i), time.Duration(m.diskBadUntil-s.now))
	case r < p.partitionP+p.crashP+p.diskP+p.commandP:
		s.randomCommand()
	default:
		m := s.ms[s.rnd.Intn(n)]
		m.clock = simClock{rt0: s.now, lt0: float64(m.clock.local(s.now)), rate: s.pickRate()}
		if m.up {
			s.arm(m)
		}
	}
}

func (s *sim) partition() {
	n := len(s.ms)
	for i := 0; i < n; i++ {
		for j := 0; j < n; j++ {
			s.links[i][j] = true
		}
	}
	switch s.rnd.Intn(4) {
	case 0: // heal
	case 1: // isolate one member
		x := s.rnd.Intn(n)
		for j := 0; j < n; j++ {
			s.links[x][j], s.links[j][x] = false, false
		}
	case 2: // split in two groups
		for i := 0; i < n; i++ {
			for j := 0; j < n; j++ {
				if (i+j)%2 == 1 && s.rnd.Intn(2) == 0 {
					s.links[i][j], s.links[j][i] = false, false
				}
			}
		}
	case 3: // asymmetric cuts
		for k := 0; k < n; k++ {
			s.links[s.rnd.Intn(n)][s.rnd.Intn(n)] = false
		}
	}
	s.logf("PARTITION %v", s.linkString())
}

// randomCommand issues an operator command at a random live member. A
// forced grant goes to a site with no look at whether it is safe: it is
// the operator's responsibility, and the checks attribute what follows to
// it.
func (s *sim) randomCommand() {
	m := s.ms[s.rnd.Intn(len(s.ms))]
	if !m.up {
		return
	}
	tc := s.p.cfg.Tickets[s.rnd.Intn(len(s.p.cfg.Tickets))]
	sites := s.sites()
	site := sites[s.rnd.Intn(len(sites))]
	c := ticket.Command{Site: s.index(m, site)}
	switch r := s.rnd.Intn(22); {
	case r < 8:
		c.Op = ticket.OpGrant
	case r < 10:
		c.Op = ticket.OpRevoke
	case r < 11:
		c.Op, c.Force = ticket.OpRevoke, true
	case r < 14:
		c.Op = ticket.OpMove
	case r < 15:
		c.Op, c.Value = ticket.OpRelease, "simulated"
	case r < 18:
		c.Op, c.Attr, c.Value = ticket.OpAttrSet, "a"+strconv.Itoa(s.rnd.Intn(3)), strconv.Itoa(s.rnd.Intn(3))
	default:
		if !s.chance(s.p.forceP) {
			return
		}
		c.Op, c.Force = ticket.OpGrant, true
		m = s.ms[site]
		c.Site = s.index(m, site)
	}
	s.command(m, tc.Name, c)
}

// rollingChange restarts the members one at a time with a new
// configuration, as docs/operations.md says: each waits until the one
// before is up again.
func (s *sim) rollingChange() {
	order := s.rnd.Perm(len(s.ms))
	next := s.p.change
	gap := int64(s.p.cfg.Tickets[0].RenewalFreq)
	var step func(k int)
	step = func(k int) {
		if k == len(order) || s.healed {
			return
		}
		m := s.ms[order[k]]
		cfg := *next
		cfg.Self = s.index(&simMember{cfg: cfg}, m.i)
		m.pending = &cfg
		s.logf("%s CONFIG CHANGE (restart with digest %x)", s.name(m.i), cfg.Digest)
		if m.up {
			s.crash(m, "restart for a configuration change")
			s.at(s.randDur(time.Second)+1, func() {
				if !m.up {
					s.boot(m, false)
				}
			})
		}
		s.at(gap+s.randDur(time.Duration(gap)), func() { step(k + 1) })
	}
	step(0)
}
