package confkit

import (
	"fmt"
	"time"
)

// Duration is a time.Duration read from TOML as a string such as "600s" or
// "1m30s". A bare integer is refused: BurntSushi/toml would otherwise read
// `expire = 600` as 600 nanoseconds.
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String formats the duration as Go does ("10s").
func (d Duration) String() string { return time.Duration(d).String() }

// UnmarshalTOML implements toml.Unmarshaler.
func (d *Duration) UnmarshalTOML(v any) error {
	s, ok := v.(string)
	if !ok {
		return fmt.Errorf("a duration must be a quoted string with a unit, like \"600s\" or \"1m\"; got %v (%T)", v, v)
	}
	return d.parse(s)
}

// UnmarshalText reads what MarshalText writes (JSON uses the pair).
func (d *Duration) UnmarshalText(b []byte) error { return d.parse(string(b)) }

func (d *Duration) parse(s string) error {
	x, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("invalid duration %q: use a number with a unit, like \"600s\" or \"1m\"", s)
	}
	if x < 0 {
		return fmt.Errorf("invalid duration %q: must not be negative", s)
	}
	*d = Duration(x)
	return nil
}

// MarshalText writes the duration in the form UnmarshalTOML reads.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }
