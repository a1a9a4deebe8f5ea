// Package buildinfo says which build of hookrelay is running, for
// `hookrelay version` and the hookrelay_build_info metric alike, so the two
// never disagree. It is no step of the flow.
//
// It may import the standard library only.
package buildinfo

import (
	"runtime"
	"runtime/debug"
	"strings"
)

// version and revision are set at link time by `make build`:
//
//	go build -ldflags "-X github.com/hookrelay/hookrelay/internal/buildinfo.version=$(git describe --tags --always --dirty)
//	  -X github.com/hookrelay/hookrelay/internal/buildinfo.revision=$(git rev-parse HEAD)"
//
// A plain `go build` or `go install` leaves them empty; Get then falls back
// to what the Go toolchain stamped into the binary (its module version, and
// the VCS revision unless built with -buildvcs=false).
var version, revision string

// Info is what a build knows about itself. Fields never are empty: an
// unknown value reads "unknown".
type Info struct {
	Version   string // a tag (v1.2.0), a git describe (v1.2.0-3-gabc1234-dirty) or a module version
	Revision  string // the VCS commit, with "-dirty" when built from a modified tree
	GoVersion string
}

// Get returns the running build's Info.
func Get() Info {
	bi, _ := debug.ReadBuildInfo()
	info := get(version, bi)
	if revision != "" {
		info.Revision = revision
	}
	return info
}

// get is Get on given inputs, for tests.
func get(ldVersion string, bi *debug.BuildInfo) Info {
	info := Info{Version: ldVersion, Revision: "unknown", GoVersion: runtime.Version()}
	if bi == nil {
		if info.Version == "" {
			info.Version = "unknown"
		}
		return info
	}
	if bi.GoVersion != "" {
		info.GoVersion = bi.GoVersion
	}
	modified := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			info.Revision = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if modified && info.Revision != "unknown" {
		info.Revision += "-dirty"
	}
	if info.Version == "" {
		// "(devel)" is what go build says of a main module built outside
		// version control, which tells an operator nothing.
		switch v := bi.Main.Version; v {
		case "", "(devel)":
			info.Version = "unknown"
			if info.Revision != "unknown" {
				info.Version = "devel-" + short(info.Revision)
			}
		default:
			info.Version = v
		}
	}
	return info
}

// short is a revision as git abbreviates it, keeping a -dirty suffix.
func short(rev string) string {
	const n = 12
	rev, dirty := strings.CutSuffix(rev, "-dirty")
	if len(rev) > n {
		rev = rev[:n]
	}
	if dirty {
		rev += "-dirty"
	}
	return rev
}

// String is the line `hookrelay version` prints.
func (i Info) String() string {
	return "hookrelay " + i.Version + " (revision " + i.Revision + ", " + i.GoVersion + ")"
}
