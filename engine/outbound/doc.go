// Package outbound is the relay's one way out, the step after dispatch: the
// HTTP requests the relay sends (deliveries to destinations; the client,
// checks, backoff and answer parsing of registration and polling) are built,
// sent and judged here, once. It renders
// a request from its templates (transforms' URL templates escape each
// placeholder for its place, SPEC 2), adds a destination's credential (an
// auth kind of the registry, one file per kind) and its Standard Webhooks
// signature (the hmac verifier's Signer), masks what it sends as a
// credential in every answer and error, and classifies the answer: success,
// retry or permanent, with the destination's Retry-After and the backoff of
// its retry policy.
//
// It may import engine/config, transforms, verifiers (for the signer),
// engine/internal/headers, internal/redact, internal/httpout, the standard
// library, go-retryablehttp and x/net's httpguts. It never imports engine:
// the engine wires it in. verifiers cannot import it back (it imports
// verifiers), so what the JWK set fetch shares with it (the pooled client,
// the bounded answer read, the transport error without its quoted URL) is
// internal/httpout, below both.
package outbound
