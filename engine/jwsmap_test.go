package engine

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"
)

// TestMapFromSignedPayload: expressions read the verified payload as `jws`,
// numbers as float64, in keys, types, data and routes, through the real
// listener.
func TestMapFromSignedPayload(t *testing.T) {
	const kid = "map-test"
	key := newResursKey(t, kid)
	set := jwk.NewSet()
	must(t, set.AddKey(key.pub))
	js, err := json.Marshal(set)
	must(t, err)
	jwks := filepath.Join(t.TempDir(), "jwks.json")
	must(t, os.WriteFile(jwks, js, 0o600))

	rec := newRecorder(t, nil)
	tr := startRelay(t, relayYAML(rec.srv.URL, ""), map[string]string{"signed": `
paths: [/in/signed]
verify:
  - kind: jws
    from: body.jwsData
    jwks_file: ` + jwks + `
    payload: must-match
event:
  key: jws.ref
  type: '"loan." + jws.state'
  data:
    doubled: jws.amount * 2
    big: jws.amount > 1000
    items: jws.items
routes:
  - to: [dest]
    when: jws.amount >= 1000
`})
	payload := []byte(`{"ref":"L-1","state":"approved","amount":1250.5,"items":[1,2.5,{"n":3e2}]}`)
	body := `{"ref":"L-1","state":"approved","amount":1250.5,"items":[1,2.5,{"n":3e2}],"jwsData":"` + key.sign(t, kid, payload) + `"}`
	if resp := tr.post("/in/signed", body, map[string]string{"Content-Type": "application/json"}); resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	waitFor(t, 5*time.Second, "the delivery", func() bool { return len(rec.requests()) == 1 })
	got := rec.delivered(t)[0]
	if got["key"] != "L-1" || got["type"] != "loan.approved" {
		t.Errorf("key %v, type %v", got["key"], got["type"])
	}
	data, _ := got["data"].(map[string]any)
	items, _ := data["items"].([]any)
	if data["doubled"] != 2501.0 || data["big"] != true || len(items) != 3 || items[1] != 2.5 ||
		items[2].(map[string]any)["n"] != 300.0 {
		t.Errorf("data = %#v", data)
	}
}
