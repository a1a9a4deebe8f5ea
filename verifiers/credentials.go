package verifiers

import "net/http"

// CredentialReader is a Verifier that reads a credential from named request
// headers or query parameters. Whoever records a request (the engine's
// rejection log and quarantine) masks those, whatever they are called: a
// token in `X-Lender-Token` is as secret as one in Authorization.
type CredentialReader interface {
	Verifier
	// CredentialNames returns the headers (canonical form) and query
	// parameters (exact) that hold the credential.
	CredentialNames() (headers, query []string)
}

var (
	_ CredentialReader = (*Token)(nil)
	_ CredentialReader = (*Bearer)(nil)
	_ CredentialReader = (*Basic)(nil)
	_ CredentialReader = (*APIKey)(nil)
)

// CredentialNames is the token's header.
func (v *Token) CredentialNames() (headers, query []string) {
	return []string{http.CanonicalHeaderKey(v.header)}, nil
}

// CredentialNames is Authorization.
func (v *Bearer) CredentialNames() (headers, query []string) { return []string{"Authorization"}, nil }

// CredentialNames is Authorization.
func (v *Basic) CredentialNames() (headers, query []string) { return []string{"Authorization"}, nil }

// CredentialNames is the key's header or query parameter.
func (v *APIKey) CredentialNames() (headers, query []string) {
	if v.inQuery {
		return nil, []string{v.name}
	}
	return []string{http.CanonicalHeaderKey(v.name)}, nil
}
