package loadtest

import (
	"os"
	"path/filepath"
	"testing"
)

// benchJWKSAPIKey is the apikey header the loopback JWKS of the JWS
// benchmarks asks for, in place of providers.d/resurs.yaml's
// env:RESURS_JWKS_APIKEY.
const benchJWKSAPIKey = "resurs-jwks-apikey"

// writeConfig writes relay.yaml and providers.d/NAME.yaml files into dir.
func writeConfig(t *testing.T, dir, relayYAML string, providers map[string]string) {
	t.Helper()
	must(t, os.MkdirAll(filepath.Join(dir, "providers.d"), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "relay.yaml"), []byte(relayYAML), 0o644))
	for name, body := range providers {
		must(t, os.WriteFile(filepath.Join(dir, "providers.d", name+".yaml"), []byte(body), 0o644))
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// relayYAML returns a relay.yaml with one destination "dest" at url and
// extra YAML appended under it (indented by the caller).
func relayYAML(url, destExtra string) string {
	return "listen: 127.0.0.1:18080\nadmin: { listen: 127.0.0.1:19090 }\nspool: { path: ./spool.db }\n" +
		"destinations:\n  dest:\n    url: \"" + url + "\"\n" + destExtra
}
