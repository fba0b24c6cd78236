// Package confkit holds the small pieces every configuration section of
// geobooth shares: a Duration that must be written as a string ("600s"),
// and FieldError, a problem tied to a dotted key path that the config
// loader turns into "file:line: key: message".
//
// Sections (ticket settings, DNS zones, volumes, the Pacemaker driver) live
// in the packages that use them; each offers a Default and a Validate that
// returns FieldErrors with keys relative to the section, so the loader can
// prefix the section's own path and find the line in the file.
package confkit
