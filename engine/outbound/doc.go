// Package outbound is the relay's one way out: every HTTP request the relay
// sends (deliveries to destinations, and the client and answer helpers of
// registration and polling) is built, sent and judged here, once. It renders
// a request from its templates (transforms' URL templates escape each
// placeholder for its place, SPEC 2), adds a destination's credential (an
// auth kind of the registry, one file per kind) and its Standard Webhooks
// signature (the hmac verifier's Signer), masks what it sends as a
// credential in every answer and error, and classifies the answer: success,
// retry or permanent, with the destination's Retry-After and the backoff of
// its retry policy.
//
// It may import engine/config, transforms, verifiers, engine/internal/headers,
// internal/redact, the standard library and go-retryablehttp (with
// go-cleanhttp). It never imports engine: the engine wires it in.
package outbound
