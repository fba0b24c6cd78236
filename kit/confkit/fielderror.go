package confkit

import (
	"fmt"
	"strings"
)

// FieldError is a configuration problem tied to a key. Key is a dotted path
// relative to the section that produced it; elements of arrays of tables are
// numbered from 0 ("zones.0.failover.1.ttl").
type FieldError struct {
	Key string
	Msg string
}

func (e FieldError) Error() string { return e.Key + ": " + e.Msg }

// Errorf builds a FieldError.
func Errorf(key, format string, args ...any) FieldError {
	return FieldError{Key: key, Msg: fmt.Sprintf(format, args...)}
}

// Prefix returns the errors with prefix joined in front of every key, for a
// section that is itself nested under prefix.
func Prefix(prefix string, errs []FieldError) []FieldError {
	out := make([]FieldError, len(errs))
	for i, e := range errs {
		out[i] = e
		if prefix != "" {
			out[i].Key = strings.TrimSuffix(prefix+"."+e.Key, ".")
		}
	}
	return out
}
