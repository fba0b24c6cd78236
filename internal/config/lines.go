package config

import (
	"strconv"
	"strings"
)

// lineIndex maps dotted key paths ("cluster.members.1.address",
// "cluster.tickets.web.retries") to the line that sets them, so errors found
// after decoding (validation) can name their line. Array-of-tables entries
// are numbered from 0 in the order they appear; a table's own path maps to
// its header line.
type lineIndex map[string]int

func keyLines(src string) lineIndex {
	idx := lineIndex{}
	counts := map[string]int{}
	table := ""
	for n, raw := range strings.Split(src, "\n") {
		line := strings.TrimSpace(stripComment(raw))
		switch {
		case line == "":
		case strings.HasPrefix(line, "[["):
			name := unquoteKey(strings.TrimSuffix(strings.TrimPrefix(line, "[["), "]]"))
			i := counts[name]
			counts[name]++
			table = name + "." + strconv.Itoa(i)
			idx.set(table, n+1)
		case strings.HasPrefix(line, "["):
			table = unquoteKey(strings.TrimSuffix(strings.TrimPrefix(line, "["), "]"))
			idx.set(table, n+1)
		default:
			eq := strings.Index(line, "=")
			if eq < 0 {
				continue
			}
			key := unquoteKey(line[:eq])
			if table != "" {
				key = table + "." + key
			}
			idx.set(key, n+1)
		}
	}
	return idx
}

func (idx lineIndex) set(key string, line int) {
	if _, ok := idx[key]; !ok {
		idx[key] = line
	}
}

// find returns the line of key, or of its nearest enclosing table, or 0.
func (idx lineIndex) find(key string) int {
	for k := key; k != ""; {
		if l, ok := idx[k]; ok {
			return l
		}
		i := strings.LastIndex(k, ".")
		if i < 0 {
			break
		}
		k = k[:i]
	}
	return 0
}

// stripComment drops a # comment that is not inside a quoted string.
func stripComment(s string) string {
	inStr := byte(0)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case inStr != 0 && c == '\\' && inStr == '"':
			i++
		case inStr != 0 && c == inStr:
			inStr = 0
		case inStr == 0 && (c == '"' || c == '\''):
			inStr = c
		case inStr == 0 && c == '#':
			return s[:i]
		}
	}
	return s
}

// unquoteKey normalises a (possibly dotted, possibly quoted) TOML key.
func unquoteKey(k string) string {
	parts := strings.Split(k, ".")
	for i, p := range parts {
		parts[i] = strings.Trim(strings.TrimSpace(p), `"'`)
	}
	return strings.Join(parts, ".")
}
