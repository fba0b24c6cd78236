package testcluster

import (
	"bytes"
	"fmt"
	"strings"
)

// BlockSize is the unit of the tests' write sequences.
const BlockSize = 4096

// SequenceScript is a qemu-io script writing blocks 0..n-1 in order,
// block i filled with the byte i%250+1, each followed by a flush.
func SequenceScript(n int) string {
	var cmds []string
	for i := 0; i < n; i++ {
		cmds = append(cmds, fmt.Sprintf("write -P %d %d 4k", i%250+1, i*BlockSize), "flush")
	}
	return strings.Join(cmds, "\n") + "\nquit\n"
}

// SequencePrefix returns k such that blocks 0..k-1 of img hold the
// sequence and every later block of the first n is zero; ok is false when
// img is not such a prefix (not crash-consistent).
func SequencePrefix(img []byte, n int) (int, bool) {
	k := 0
	for k < n && bytes.Count(img[k*BlockSize:(k+1)*BlockSize], []byte{byte(k%250 + 1)}) == BlockSize {
		k++
	}
	for i := k; i < n; i++ {
		if bytes.Count(img[i*BlockSize:(i+1)*BlockSize], []byte{0}) != BlockSize {
			return k, false
		}
	}
	return k, true
}
