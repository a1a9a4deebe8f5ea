// Package provider is the step after the HTTP edge: a provider file
// compiled once at load (New) into a Provider, whose pipeline verifies a
// webhook, decrypts it, maps it to the canonical event and routes it, and
// says what came of it in one Result. The Provider also holds what the edge
// needs around the pipeline (paths and methods, max_body, dedup, respond)
// and masks what people read of a request (SPEC 11: sensitive paths,
// credentials). Ingest answers the lender from
// that Result, `hookrelay try` and `hookrelay test` print and compare it, and
// the poller spools or logs it, so the three cannot disagree about what a
// request is (an unavailable JWKS is 503 for all of them, never 401 for one).
//
// It may import engine/config, engine/spool (for the event types),
// engine/internal/*, verifiers, transforms, internal/*, ulid and the
// standard library. It never imports engine, nor engine/lender, which sits above it
// (a poller runs the pipeline): the engine compiles a provider's register
// and poll blocks beside it.
package provider
