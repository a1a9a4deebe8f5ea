package main

import (
	"fmt"
	"io"

	"github.com/hookrelay/hookrelay/internal/buildinfo"
)

// printVersion is `hookrelay version`. The version comes from
// internal/buildinfo, where `make build` sets it with -ldflags -X from
// `git describe`, so that it matches hookrelay_build_info on /metrics.
func printVersion(stdout io.Writer, asJSON bool) int {
	info := buildinfo.Get()
	if asJSON {
		return printValue(stdout, map[string]string{"version": info.Version, "revision": info.Revision, "go": info.GoVersion})
	}
	fmt.Fprintln(stdout, info)
	return 0
}
