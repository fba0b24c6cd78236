package confkit

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// ReadSecret reads a token or key file: it must be readable by its owner
// only, and not empty; a trailing newline is not part of the secret.
func ReadSecret(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s is readable by others (mode %v): chmod 600 it", path, st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	b = []byte(strings.TrimRight(string(b), "\r\n"))
	if len(b) == 0 {
		return nil, errors.New(path + " is empty")
	}
	return b, nil
}
