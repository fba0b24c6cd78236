package confkit

import (
	"strconv"
	"strings"
)

// Lines maps the keys of a TOML document to the lines that set them, so
// that a validation error can say file:line: key. Keys are written as
// the validators write them: tables and keys joined by dots, an element of
// an array of tables by its index ("zones.0.failover.1.ttl"). It reads the
// common shapes ([table], [[array]], key = value, dotted keys); a key set
// inside an inline table maps to the line of the key that holds it.
type Lines map[string]int

// KeyLines reads a TOML document's key lines.
func KeyLines(doc string) Lines {
	lines := Lines{}
	counts := map[string]int{} // array of tables (its path with indexes) → elements seen
	table := ""
	for i, raw := range strings.Split(doc, "\n") {
		line := strings.TrimSpace(stripComment(raw))
		switch {
		case line == "":
		case strings.HasPrefix(line, "[["):
			name := strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(line, "[["), "]]"))
			base := unquote(strings.TrimSpace(name))
			if i := strings.LastIndexByte(name, '.'); i >= 0 {
				base = indexed(name[:i], counts) + "." + unquote(strings.TrimSpace(name[i+1:]))
			}
			n := counts[base]
			counts[base] = n + 1
			table = base + "." + strconv.Itoa(n)
			lines[table] = i + 1
		case strings.HasPrefix(line, "["):
			name := strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(line, "["), "]"))
			table = indexed(name, counts)
			lines[table] = i + 1
		default:
			key, _, ok := strings.Cut(line, "=")
			if !ok {
				continue
			}
			full := unquoteKey(key)
			if table != "" {
				full = table + "." + full
			}
			if _, seen := lines[full]; !seen {
				lines[full] = i + 1
			}
		}
	}
	return lines
}

// Line is the line of key, or of the nearest key or table that holds it
// (0: not found). A key without the indexes of its arrays of tables (as
// the decoder names an unknown key: "zones.failover.health.fal") is the
// first key of the document it names.
func (l Lines) Line(key string) int {
	for k := key; k != ""; {
		if n, ok := l[k]; ok {
			return n
		}
		if n := l.firstUnindexed(k); n > 0 {
			return n
		}
		i := strings.LastIndexByte(k, '.')
		if i < 0 {
			break
		}
		k = k[:i]
	}
	return 0
}

// firstUnindexed is the first line of a key that is k once the indexes
// of its arrays of tables are taken out (0: none).
func (l Lines) firstUnindexed(k string) int {
	first := 0
	for key, n := range l {
		if (first == 0 || n < first) && unindexed(key) == k {
			first = n
		}
	}
	return first
}

// unindexed drops a dotted key's numeric parts.
func unindexed(key string) string {
	parts := strings.Split(key, ".")
	kept := parts[:0]
	for _, p := range parts {
		if _, err := strconv.Atoi(p); err != nil {
			kept = append(kept, p)
		}
	}
	return strings.Join(kept, ".")
}

// indexed writes a table's dotted name with the index of the current
// element of each array of tables on its path.
func indexed(name string, counts map[string]int) string {
	var out string
	for _, part := range strings.Split(name, ".") {
		part = unquote(strings.TrimSpace(part))
		if out != "" {
			out += "."
		}
		out += part
		if n, ok := counts[out]; ok && n > 0 {
			out += "." + strconv.Itoa(n-1)
		}
	}
	return out
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

// unquoteKey normalises a (possibly dotted, possibly quoted) key.
func unquoteKey(k string) string {
	parts := strings.Split(k, ".")
	for i, p := range parts {
		parts[i] = unquote(strings.TrimSpace(p))
	}
	return strings.Join(parts, ".")
}

func unquote(s string) string {
	if len(s) >= 2 && (s[0] == '"' && s[len(s)-1] == '"' || s[0] == '\'' && s[len(s)-1] == '\'') {
		return s[1 : len(s)-1]
	}
	return s
}
