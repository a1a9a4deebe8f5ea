package verifiers_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
)

// BenchmarkJWSVerify is the jws verifier alone, as Resurs is verified: an
// RS256 token in body.jwsData, payload must-match, its kid one of two keys
// of a JWK set read at load, so that no HTTP or spool cost shows.
func BenchmarkJWSVerify(b *testing.B) {
	key := rsaKey(b, "resurs")
	set := jwk.NewSet()
	for _, k := range []jwk.Key{publicJWK(b, key, "k1"), publicJWK(b, rsaKey(b, "resurs-next"), "k2")} {
		if err := set.AddKey(k); err != nil {
			b.Fatal(err)
		}
	}
	data, err := json.Marshal(set)
	if err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(b.TempDir(), "jwks.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		b.Fatal(err)
	}
	v := mustBuild(b, "jws", map[string]any{"from": "body.jwsData", "jwks_file": path, "payload": "must-match"})
	r := req(resursBody(resursEvent, signJWS(b, jwa.RS256, key, "k1", resursPayload(resursEvent))))
	if err := v.Verify(context.Background(), r); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := v.Verify(context.Background(), r); err != nil {
			b.Fatal(err)
		}
	}
}
