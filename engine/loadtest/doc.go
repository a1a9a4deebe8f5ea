// Package loadtest is the load and benchmark harness of issue 14's step 2:
// the ceilings (g) and (h), the relay's ingest and end-to-end benchmarks,
// the report that sets them side by side (make bench, bench-short), the
// open-loop and overload tests, the sustained-load and outage test (make
// sustain) and the restart at scale, with the load generator that runs in a
// process of its own. See BENCHMARKS.md.
//
// It is tests only, beside this comment. They drive the relay through
// engine's exported API (Load, Open, Start, IngestHandler, Config, Backlog)
// and the spool's, and share their requests with engine's micro-benchmarks
// through engine/internal/benchkit. Nothing imports this package.
package loadtest
