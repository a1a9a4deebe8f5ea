package verifiers_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"

	"github.com/hookrelay/hookrelay/verifiers"
)

func TestJWSKeyFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	key, other := rsaKey(t, "resurs"), rsaKey(t, "resurs-next")
	set := jwk.NewSet()
	_ = set.AddKey(publicJWK(t, key, "k1"))
	_ = set.AddKey(publicJWK(t, other, "k2"))
	setJSON, _ := json.Marshal(set)
	single, _ := json.Marshal(publicJWK(t, key, "k1"))
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pkcs1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&key.PublicKey)})

	payload := resursPayload(resursEvent)
	body := func(alg jwa.SignatureAlgorithm, k any, kid string) string {
		return resursBody(resursEvent, signJWS(t, alg, k, kid, payload))
	}
	for _, c := range []struct {
		name string
		cfg  map[string]any
		body string
		want error
	}{
		{"jwks_file", map[string]any{"jwks_file": write("set.json", setJSON)}, body(jwa.RS256, other, "k2"), nil},
		{"jwks_file unknown kid", map[string]any{"jwks_file": write("set.json", setJSON)}, body(jwa.RS256, other, "k3"), verifiers.ErrMismatch},
		{"key_file PEM PKIX, token kid", map[string]any{"key_file": write("pub.pem", pemPublic(t, &key.PublicKey))}, body(jwa.RS256, key, "any"), nil},
		{"key_file PEM PKIX, no kid", map[string]any{"key_file": write("pub.pem", pemPublic(t, &key.PublicKey))}, body(jwa.RS256, key, ""), nil},
		{"key_file PEM, wrong key", map[string]any{"key_file": write("pub.pem", pemPublic(t, &key.PublicKey))}, body(jwa.RS256, other, ""), verifiers.ErrMismatch},
		{"key_file PEM PKCS#1", map[string]any{"key_file": write("pkcs1.pem", pkcs1)}, body(jwa.RS256, key, "k1"), nil},
		{"key_file JWK", map[string]any{"key_file": write("k1.jwk", single)}, body(jwa.RS256, key, "k1"), nil},
		{"key_file JWK, other kid", map[string]any{"key_file": write("k1.jwk", single)}, body(jwa.RS256, key, "k2"), verifiers.ErrMismatch},
		{"key_file EC", map[string]any{"key_file": write("ec.pem", pemPublic(t, &ec.PublicKey)), "algorithms": []string{"ES256"}}, body(jwa.ES256, ec, ""), nil},
		{"key_file EC, RS256 token", map[string]any{"key_file": write("ec.pem", pemPublic(t, &ec.PublicKey)), "algorithms": []string{"ES256"}}, body(jwa.RS256, key, ""), verifiers.ErrAlgorithm},
		{"key_file RSA and EC allowed, ES256 token", map[string]any{"key_file": write("pub.pem", pemPublic(t, &key.PublicKey)), "algorithms": []string{"RS256", "ES256"}}, body(jwa.ES256, ec, ""), verifiers.ErrMismatch},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.cfg["from"] = "body.jwsData"
			c.cfg["payload"] = "must-match"
			v := mustBuild(t, "jws", c.cfg)
			err := v.Verify(context.Background(), req(c.body))
			checkErr(t, err, c.want)
			noKeyMaterial(t, err)
		})
	}
}

func TestJWSConfigErrors(t *testing.T) {
	dir := t.TempDir()
	pub := filepath.Join(dir, "pub.pem")
	if err := os.WriteFile(pub, pemPublic(t, &rsaKey(t, "resurs").PublicKey), 0o600); err != nil {
		t.Fatal(err)
	}
	oct := filepath.Join(dir, "oct.jwk")
	if err := os.WriteFile(oct, []byte(`{"kty":"oct","k":"c2VjcmV0LXNlY3JldC1zZWNyZXQ"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	garbage := filepath.Join(dir, "garbage.json")
	if err := os.WriteFile(garbage, []byte(`{"keys":"nope"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	const url = "https://apigw.integration.resurs.com/api/auth_service/jwks"
	for _, c := range []struct {
		name  string
		cfg   map[string]any
		field string
	}{
		{"no from", map[string]any{"jwks_url": url}, "from"},
		{"from without source", map[string]any{"from": "jwsData", "jwks_url": url}, "from"},
		{"from body.", map[string]any{"from": "body.", "jwks_url": url}, "from"},
		{"from empty segment", map[string]any{"from": "body.a..b", "jwks_url": url}, "from"},
		{"from query", map[string]any{"from": "query.jws", "jwks_url": url}, "from"},
		{"no key source", map[string]any{"from": "body.jwsData"}, "jwks_url"},
		{"two key sources", map[string]any{"from": "body.jwsData", "jwks_url": url, "key_file": pub}, "key_file"},
		{"jwks_file and key_file", map[string]any{"from": "body.jwsData", "jwks_file": pub, "key_file": pub}, "key_file"},
		{"alg none", map[string]any{"from": "body.jwsData", "jwks_url": url, "algorithms": []string{"none"}}, "algorithms[0]"},
		{"HS256 with jwks", map[string]any{"from": "body.jwsData", "jwks_url": url, "algorithms": []string{"RS256", "HS256"}}, "algorithms[1]"},
		{"HS512 with key_file", map[string]any{"from": "body.jwsData", "key_file": pub, "algorithms": []string{"HS512"}}, "algorithms[0]"},
		{"unknown alg", map[string]any{"from": "body.jwsData", "jwks_url": url, "algorithms": []string{"RSA256"}}, "algorithms[0]"},
		{"unknown payload mode", map[string]any{"from": "body.jwsData", "jwks_url": url, "payload": "match"}, "payload"},
		{"jwks_url ftp", map[string]any{"from": "body.jwsData", "jwks_url": "ftp://example.com/jwks"}, "jwks_url"},
		{"jwks_url file relative", map[string]any{"from": "body.jwsData", "jwks_url": "file:jwks.json"}, "jwks_url"},
		{"jwks_url file relative path", map[string]any{"from": "body.jwsData", "jwks_url": "file://jwks.json"}, "jwks_url"},
		{"jwks_url file on a host", map[string]any{"from": "body.jwsData", "jwks_url": "file://example.com/jwks.json"}, "jwks_url"},
		{"jwks_url file with query", map[string]any{"from": "body.jwsData", "jwks_url": "file:///etc/jwks.json?x=1"}, "jwks_url"},
		{"jwks_url file without path", map[string]any{"from": "body.jwsData", "jwks_url": "file://"}, "jwks_url"},
		{"jwks_url relative", map[string]any{"from": "body.jwsData", "jwks_url": "/jwks"}, "jwks_url"},
		{"negative refresh", map[string]any{"from": "body.jwsData", "jwks_url": url, "refresh": "-1s"}, "refresh"},
		{"negative min_refresh", map[string]any{"from": "body.jwsData", "jwks_url": url, "min_refresh": "-1s"}, "min_refresh"},
		{"jwks_headers without jwks_url", map[string]any{"from": "body.jwsData", "key_file": pub, "jwks_headers": map[string]any{"apikey": "x"}}, "jwks_headers"},
		{"min_refresh without jwks_url", map[string]any{"from": "body.jwsData", "key_file": pub, "min_refresh": "1s"}, "min_refresh"},
		{"key_file missing", map[string]any{"from": "body.jwsData", "key_file": filepath.Join(dir, "nope.pem")}, "key_file"},
		{"key_file symmetric", map[string]any{"from": "body.jwsData", "key_file": oct}, "key_file"},
		{"key_file garbage", map[string]any{"from": "body.jwsData", "key_file": garbage}, "key_file"},
		{"jwks_file garbage", map[string]any{"from": "body.jwsData", "jwks_file": garbage}, "jwks_file"},
		{"jwks_file of a symmetric key only", map[string]any{"from": "body.jwsData", "jwks_file": oct}, "jwks_file"},
		{"RSA key_file, EC algorithms", map[string]any{"from": "body.jwsData", "key_file": pub, "algorithms": []string{"ES256"}}, "key_file"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := build("jws", c.cfg)
			wantFieldError(t, err, c.field)
			if strings.Contains(err.Error(), "c2VjcmV0") {
				t.Errorf("error discloses the key: %v", err)
			}
		})
	}
}

// fileURL is the file:// URL of an absolute path.
func fileURL(path string) string {
	return (&url.URL{Scheme: "file", Path: filepath.ToSlash(path)}).String()
}

// writeFile writes data to path, failing the test on error.
func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// jwksJSON is a JWK set of keys, as JSON.
func jwksJSON(t *testing.T, keys ...jwk.Key) []byte {
	t.Helper()
	set := jwk.NewSet()
	for _, k := range keys {
		if err := set.AddKey(k); err != nil {
			t.Fatal(err)
		}
	}
	data, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestJWSFileJWKSURL(t *testing.T) {
	oldKey, newKey := rsaKey(t, "resurs"), rsaKey(t, "resurs-next")
	dir := t.TempDir()
	path := filepath.Join(dir, "jwks.json")
	payload := resursPayload(resursEvent)
	oldBody := resursBody(resursEvent, signJWS(t, jwa.RS256, oldKey, "old", payload))
	newBody := resursBody(resursEvent, signJWS(t, jwa.RS256, newKey, "new", payload))
	cfg := func(extra map[string]any) map[string]any {
		c := map[string]any{"from": "body.jwsData", "jwks_url": fileURL(path), "payload": "must-match"}
		for k, v := range extra {
			c[k] = v
		}
		return c
	}
	check := func(t *testing.T, v verifiers.Verifier, body string, want error) {
		t.Helper()
		err := v.Verify(context.Background(), req(body))
		checkErr(t, err, want)
		noKeyMaterial(t, err)
		if err != nil && strings.Contains(err.Error(), dir) {
			t.Errorf("error names the path: %v", err)
		}
	}

	t.Run("missing at load, read on use", func(t *testing.T) {
		// A file that is not there yet is no config error: it is read on use.
		v := mustBuild(t, "jws", cfg(map[string]any{"min_refresh": "1ms"}))
		check(t, v, oldBody, verifiers.ErrUnavailable)
		writeFile(t, path, jwksJSON(t, publicJWK(t, oldKey, "old")))
		time.Sleep(2 * time.Millisecond)
		check(t, v, oldBody, nil)
	})

	t.Run("localhost", func(t *testing.T) {
		writeFile(t, path, jwksJSON(t, publicJWK(t, oldKey, "old")))
		v := mustBuild(t, "jws", cfg(map[string]any{"jwks_url": "file://localhost" + filepath.ToSlash(path)}))
		check(t, v, oldBody, nil)
	})

	t.Run("cached, unknown kid rereads once per min_refresh", func(t *testing.T) {
		writeFile(t, path, jwksJSON(t, publicJWK(t, oldKey, "old")))
		v := mustBuild(t, "jws", cfg(map[string]any{"min_refresh": "100ms"}))
		check(t, v, oldBody, nil)
		// Rotation: the new kid is read within min_refresh of the first read.
		writeFile(t, path, jwksJSON(t, publicJWK(t, oldKey, "old"), publicJWK(t, newKey, "new")))
		check(t, v, newBody, verifiers.ErrMismatch)
		time.Sleep(110 * time.Millisecond)
		check(t, v, newBody, nil)
		// The file is cached: removing it changes nothing until a reread.
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		check(t, v, oldBody, nil)
		check(t, v, newBody, nil)
	})

	t.Run("stale set while the file is broken", func(t *testing.T) {
		writeFile(t, path, jwksJSON(t, publicJWK(t, oldKey, "old")))
		v := mustBuild(t, "jws", cfg(map[string]any{"refresh": "1ms", "min_refresh": "1ms"}))
		check(t, v, oldBody, nil)
		for _, broken := range []func(){
			func() { writeFile(t, path, []byte("<html>we moved</html>")) },
			func() { writeFile(t, path, []byte(`{"keys":[]}`)) },
			func() { _ = os.Remove(path) },
			func() { _ = os.Mkdir(path, 0o700) },
		} {
			broken()
			time.Sleep(2 * time.Millisecond)
			check(t, v, oldBody, nil)
		}
		_ = os.Remove(path)
		// The next read after refresh picks up a replaced file.
		writeFile(t, path, jwksJSON(t, publicJWK(t, newKey, "new")))
		time.Sleep(2 * time.Millisecond)
		check(t, v, newBody, nil)
		check(t, v, oldBody, verifiers.ErrMismatch)
	})

	t.Run("unusable files", func(t *testing.T) {
		big := append([]byte(`{"keys":[],"pad":"`), make([]byte, verifiers.JWKSMaxBytes)...)
		for i := 18; i < len(big); i++ {
			big[i] = 'a'
		}
		big = append(big, `"}`...)
		for name, setup := range map[string]func(p string){
			"missing":   func(string) {},
			"directory": func(p string) { _ = os.Mkdir(p, 0o700) },
			"too big":   func(p string) { writeFile(t, p, big) },
			"not JWKS":  func(p string) { writeFile(t, p, []byte("{}")) },
			"symmetric": func(p string) { writeFile(t, p, []byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`)) },
		} {
			t.Run(name, func(t *testing.T) {
				p := filepath.Join(t.TempDir(), "jwks.json")
				setup(p)
				v := mustBuild(t, "jws", cfg(map[string]any{"jwks_url": fileURL(p)}))
				err := v.Verify(context.Background(), req(oldBody))
				checkErr(t, err, verifiers.ErrUnavailable)
				if strings.Contains(err.Error(), p) || strings.Contains(err.Error(), "c2VjcmV0") {
					t.Errorf("error names the path or the key: %v", err)
				}
			})
		}
	})
}
