// Package buildinfo says which build of geobooth is running: the version
// stamped at link time (make: -X .../buildinfo.Version=$(git describe)),
// else the module version and VCS revision Go recorded in the binary.
package buildinfo

import (
	"runtime/debug"
)

// Version is set at link time; empty in a plain go build.
var Version string

// String is the version to show: Version when stamped, else the module's
// version with the commit it was built from ("+dirty" when the tree had
// changes), else "dev".
func String() string {
	if Version != "" {
		return Version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "dev"
	}
	return fromBuildInfo(bi)
}

func fromBuildInfo(bi *debug.BuildInfo) string {
	v := bi.Main.Version
	if v == "" || v == "(devel)" {
		v = "dev"
	}
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "+dirty"
			}
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev != "" && v == "dev" {
		return "dev-" + rev + dirty
	}
	return v
}
