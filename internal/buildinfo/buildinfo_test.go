package buildinfo

import (
	"runtime/debug"
	"testing"
)

func TestGetFallsBack(t *testing.T) {
	vcs := func(rev, modified string) []debug.BuildSetting {
		return []debug.BuildSetting{{Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: modified}}
	}
	const rev = "0123456789abcdef0123456789abcdef01234567"
	for _, c := range []struct {
		name    string
		ld      string
		bi      *debug.BuildInfo
		version string
		revison string
	}{
		{"ldflags win", "v1.2.0-3-gabc1234", &debug.BuildInfo{GoVersion: "go1.x", Main: debug.Module{Version: "v0.0.0-x"}, Settings: vcs(rev, "false")}, "v1.2.0-3-gabc1234", rev},
		{"module version", "", &debug.BuildInfo{GoVersion: "go1.x", Main: debug.Module{Version: "v1.3.0"}}, "v1.3.0", "unknown"},
		{"devel with vcs", "", &debug.BuildInfo{GoVersion: "go1.x", Main: debug.Module{Version: "(devel)"}, Settings: vcs(rev, "true")}, "devel-0123456789ab-dirty", rev + "-dirty"},
		{"devel without vcs", "", &debug.BuildInfo{GoVersion: "go1.x", Main: debug.Module{Version: "(devel)"}}, "unknown", "unknown"},
		{"no build info", "", nil, "unknown", "unknown"},
	} {
		got := get(c.ld, c.bi)
		if got.Version != c.version || got.Revision != c.revison || got.GoVersion == "" {
			t.Errorf("%s: got %+v, want version %q revision %q", c.name, got, c.version, c.revison)
		}
	}
}
