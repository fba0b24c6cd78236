package confkit

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
)

func TestDurationReadsStringsAndRefusesIntegers(t *testing.T) {
	var c struct {
		Expire Duration `toml:"expire"`
	}
	if _, err := toml.Decode(`expire = "90s"`, &c); err != nil {
		t.Fatalf("decode string duration: %v", err)
	}
	if c.Expire.D() != 90*time.Second {
		t.Fatalf("expire = %v, want 90s", c.Expire)
	}
	for _, src := range []string{`expire = 600`, `expire = "600"`, `expire = "-1s"`, `expire = 1.5`} {
		_, err := toml.Decode(src, &c)
		if err == nil {
			t.Errorf("%s: decoded without error", src)
			continue
		}
		if !strings.Contains(err.Error(), "line 1") {
			t.Errorf("%s: error %q does not name the line", src, err)
		}
	}
}

func TestPrefixJoinsKeys(t *testing.T) {
	got := Prefix("tickets.web", []FieldError{Errorf("expire", "too short"), Errorf("", "bad")})
	if got[0].Key != "tickets.web.expire" || got[1].Key != "tickets.web" {
		t.Fatalf("keys = %q, %q", got[0].Key, got[1].Key)
	}
}

// What MarshalText writes, UnmarshalText reads back: a config goes through
// JSON and comes back equal; a negative or unitless one is refused there too.
func TestDurationRoundTripsThroughJSON(t *testing.T) {
	in := struct{ D Duration }{Duration(90*time.Second + 5*time.Millisecond)}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var out struct{ D Duration }
	if err := json.Unmarshal(b, &out); err != nil || out != in {
		t.Fatalf("%s came back as %v (%v)", b, out.D, err)
	}
	for _, src := range []string{`{"D":"-1s"}`, `{"D":"600"}`} {
		if err := json.Unmarshal([]byte(src), &out); err == nil {
			t.Errorf("%s: decoded as %v", src, out.D)
		}
	}
}
