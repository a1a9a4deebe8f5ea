package verifiers

import "errors"

// Rejection reasons. Verifiers wrap them with the detail that helps an
// integrator (which header, which format), never with secret material.
var (
	// ErrUnknownKind is returned by Registry.New for a kind nobody registered.
	ErrUnknownKind = errors.New("unknown verifier kind")
	// ErrMissing is returned when the credential or signature is absent.
	ErrMissing = errors.New("missing credentials")
	// ErrMalformed is returned when the credential is present but cannot be parsed.
	ErrMalformed = errors.New("malformed credentials")
	// ErrMismatch is returned when the credential or signature does not match.
	ErrMismatch = errors.New("invalid credentials")
	// ErrStale is returned when a signed timestamp is outside the tolerance.
	ErrStale = errors.New("timestamp outside tolerance")
	// ErrForbidden is returned when the peer address is not allowed.
	ErrForbidden = errors.New("address not allowed")
	// ErrAlgorithm is returned when a signed token names an algorithm the
	// verifier does not accept (none, HMAC against public keys, or one left
	// out of its allow-list). Such errors wrap ErrMismatch as well.
	ErrAlgorithm = errors.New("algorithm not allowed")
	// ErrUnavailable is returned when the keys to verify with cannot be had,
	// such as a JWK set URL that has failed since startup. The request may
	// be authentic; the sender should retry later.
	ErrUnavailable = errors.New("verification keys unavailable")
)
