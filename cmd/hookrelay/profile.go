package main

import (
	"fmt"
	"os"
	"runtime/pprof"
)

// cpuProfileEnv names a file: when set, serve writes a CPU profile of the
// whole run to it, finished when the relay stops (SIGTERM or SIGINT), and
// beside it FILE.allocs, the allocation profile of the run. It is
// for measuring the relay as it runs (BENCHMARKS.md), so it is an opt-in of
// the process's environment rather than an endpoint anyone could call.
const cpuProfileEnv = "HOOKRELAY_CPUPROFILE"

// startCPUProfile starts profiling into file and returns what stops it.
func startCPUProfile(file string) (func(), error) {
	f, err := os.Create(file)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		_ = f.Close()
		if a, err := os.Create(file + ".allocs"); err == nil {
			_ = pprof.Lookup("allocs").WriteTo(a, 0)
			_ = a.Close()
		}
	}, nil
}
