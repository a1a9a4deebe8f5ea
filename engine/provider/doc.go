// Package provider is the step after the HTTP edge: a provider file's
// pipeline, compiled once at load (Compile), verifies a webhook, decrypts
// it, maps it to the canonical event and routes it, and says what came of
// it in one Result. Ingest answers the lender from
// that Result, `hookrelay try` and `hookrelay test` print and compare it, and
// the poller spools or logs it, so the three cannot disagree about what a
// request is (an unavailable JWKS is 503 for all of them, never 401 for one).
//
// It may import engine/config, engine/spool (for the event types),
// verifiers, transforms, internal/* and the standard library. It never
// imports engine: the engine compiles providers through it and renders its
// results.
package provider
