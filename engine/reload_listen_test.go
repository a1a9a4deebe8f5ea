package engine

import (
	"net/http"
	"strings"
	"testing"
)

// TestReloadKeepsListeners: a reload never moves a listener (SPEC 2). Moving
// admin.listen to loopback while dropping the token used to be accepted and
// left the running public listener open to requests without a token; now
// it, and a changed ingest listen, refuse the whole reload with the reason,
// and nothing of it (not even a provider change) takes effect.
func TestReloadKeepsListeners(t *testing.T) {
	public := strings.Replace(adminRelayYAML("http://127.0.0.1:1/x", ""), "listen: 127.0.0.1:19090", "listen: 0.0.0.0:19090", 1)
	tr := startRelay(t, public, map[string]string{"plain": plainProvider})
	retyped := strings.Replace(plainProvider, "type: body.type", `type: '"retyped"'`, 1)

	for _, c := range []struct{ name, yaml, key string }{
		{"admin to loopback without token", relayYAML("http://127.0.0.1:1/x", ""), "admin.listen"},
		{"admin moved", strings.Replace(public, "0.0.0.0:19090", "0.0.0.0:19091", 1), "admin.listen"},
		{"ingest moved", strings.Replace(public, "listen: 127.0.0.1:18080", "listen: 127.0.0.1:18081", 1), "listen"},
	} {
		writeConfig(t, tr.dir, c.yaml, map[string]string{"plain": retyped})
		var res struct {
			Error  string
			Errors []string
		}
		tr.do("POST", "/admin/reload", "", http.StatusUnprocessableEntity, &res)
		if len(res.Errors) != 1 || !strings.Contains(res.Errors[0], "relay.yaml:") ||
			!strings.HasPrefix(res.Errors[0][strings.Index(res.Errors[0], ": ")+2:], c.key+": ") ||
			!strings.Contains(res.Errors[0], "restart") {
			t.Errorf("%s: refusal %+v, want one relay.yaml:line: %s: ... restart", c.name, res, c.key)
		}
		if status, body := tr.callAuth("GET", "/admin/events", "", ""); status != http.StatusUnauthorized {
			t.Errorf("%s: GET /admin/events without a token after the reload: %d %s", c.name, status, body)
		}
		if body := string(tr.get("/admin/providers", nil)); strings.Contains(body, "retyped") {
			t.Errorf("%s: the refused reload changed a provider: %s", c.name, body)
		}
	}
	// The same files with the listeners as they run: accepted.
	writeConfig(t, tr.dir, public, map[string]string{"plain": retyped})
	tr.do("POST", "/admin/reload", "", http.StatusOK, nil)
	if body := string(tr.get("/admin/providers", nil)); !strings.Contains(body, "retyped") {
		t.Errorf("the accepted reload did not change the provider: %s", body)
	}
}
