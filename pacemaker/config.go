package pacemaker

import (
	"os/exec"
	"time"

	"github.com/geobooth/geobooth/kit/confkit"
)

// Config is the [pacemaker] section of a site's configuration.
type Config struct {
	// Driver: auto (crm_ticket when it is on PATH, else none), crm_ticket,
	// or none.
	Driver string `toml:"driver"`
	// CrmTicket is the crm_ticket program.
	CrmTicket string `toml:"crm_ticket"`
	// CrmMon is the crm_mon program, asked whether a revoked ticket's
	// resources are stopped.
	CrmMon string `toml:"crm_mon"`
	// CrmAttribute is the crm_attribute program, which keeps the site
	// daemon's incarnation in the CIB (see Incarnations).
	CrmAttribute string `toml:"crm_attribute"`
	// CIBFile, when set, is passed as CIB_file: crm_ticket then works on
	// that file instead of the live CIB (tests, offline sites).
	CIBFile string `toml:"cib_file"`
	// Timeout bounds one crm_ticket call.
	Timeout confkit.Duration `toml:"timeout"`
	// Retries: extra attempts after a failed call.
	Retries int `toml:"retries"`
	// OnRevokeFailure: exit (the daemon exits, so the local cluster
	// recovers or fences this node) or log.
	OnRevokeFailure string `toml:"on_revoke_failure"`
	// GuardTime is how long this site's resources may outlive a geoboothd
	// that died: the ticket-guard agent's promoted monitor interval plus
	// the time the cluster takes to stop (or fence) what it guards. It
	// must fit in every ticket's acquire_after (see ticket.Config's
	// CrashMargin), which a lost owner's successor waits out.
	GuardTime confkit.Duration `toml:"guard_time"`
}

// Default returns the section's defaults.
func Default() Config {
	return Config{Driver: "auto", CrmTicket: "crm_ticket", CrmMon: "crm_mon", CrmAttribute: "crm_attribute", Timeout: confkit.Duration(10 * time.Second),
		Retries: 3, OnRevokeFailure: "exit"}
}

// Validate checks the section.
func (c *Config) Validate() []confkit.FieldError {
	var errs []confkit.FieldError
	switch c.Driver {
	case "auto", "none":
	case "crm_ticket":
		if _, err := exec.LookPath(c.CrmTicket); err != nil {
			errs = append(errs, confkit.Errorf("crm_ticket", "%q not found (install pacemaker-cli-utils, or use driver = \"none\")", c.CrmTicket))
		}
		if _, err := exec.LookPath(c.CrmMon); err != nil {
			errs = append(errs, confkit.Errorf("crm_mon", "%q not found (install pacemaker-cli-utils, or use driver = \"none\")", c.CrmMon))
		}
		if _, err := exec.LookPath(c.CrmAttribute); err != nil {
			errs = append(errs, confkit.Errorf("crm_attribute", "%q not found (install pacemaker-cli-utils, or use driver = \"none\")", c.CrmAttribute))
		}
	default:
		errs = append(errs, confkit.Errorf("driver", "%q: want auto, crm_ticket or none", c.Driver))
	}
	if c.Timeout <= 0 {
		errs = append(errs, confkit.Errorf("timeout", "must be positive"))
	}
	if c.Retries < 0 {
		errs = append(errs, confkit.Errorf("retries", "must not be negative"))
	}
	if c.GuardTime < 0 {
		errs = append(errs, confkit.Errorf("guard_time", "must not be negative"))
	}
	switch c.OnRevokeFailure {
	case "exit", "log":
	default:
		errs = append(errs, confkit.Errorf("on_revoke_failure", "%q: want exit or log", c.OnRevokeFailure))
	}
	return errs
}

// UseCrmTicket reports whether the configured driver is crm_ticket.
func (c *Config) UseCrmTicket() bool {
	if c.Driver == "crm_ticket" {
		return true
	}
	if c.Driver == "auto" {
		_, err := exec.LookPath(c.CrmTicket)
		return err == nil
	}
	return false
}
