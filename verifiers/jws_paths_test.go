package verifiers

import "testing"

// TestJWSResolvePaths: relative key files and file:// JWKS URLs are made
// absolute under the provider file's directory; absolute ones, http URLs
// and file URLs with a host are left as written.
func TestJWSResolvePaths(t *testing.T) {
	for _, c := range []struct{ in, want JWSConfig }{
		{JWSConfig{KeyFile: "keys/k.pem"}, JWSConfig{KeyFile: "/etc/hr/providers.d/keys/k.pem"}},
		{JWSConfig{JWKSFile: "../jwks.json"}, JWSConfig{JWKSFile: "/etc/hr/jwks.json"}},
		{JWSConfig{KeyFile: "/abs/k.pem"}, JWSConfig{KeyFile: "/abs/k.pem"}},
		{JWSConfig{JWKSURL: "file://keys/jwks.json"}, JWSConfig{JWKSURL: "file:///etc/hr/providers.d/keys/jwks.json"}},
		{JWSConfig{JWKSURL: "file:///abs/jwks.json"}, JWSConfig{JWKSURL: "file:///abs/jwks.json"}},
		{JWSConfig{JWKSURL: "file://localhost/abs/jwks.json"}, JWSConfig{JWKSURL: "file://localhost/abs/jwks.json"}},
		{JWSConfig{JWKSURL: "file://keys/jwks.json?x"}, JWSConfig{JWKSURL: "file://keys/jwks.json?x"}},
		{JWSConfig{JWKSURL: "https://lender.example/jwks"}, JWSConfig{JWKSURL: "https://lender.example/jwks"}},
	} {
		got := c.in
		got.ResolvePaths("/etc/hr/providers.d")
		if got.KeyFile != c.want.KeyFile || got.JWKSFile != c.want.JWKSFile || got.JWKSURL != c.want.JWKSURL {
			t.Errorf("ResolvePaths(%+v) = %+v, want %+v", c.in, got, c.want)
		}
	}
}
