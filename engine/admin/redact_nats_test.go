package admin

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestRedactNATS: spool.nats credentials written inline are masked in the
// configuration the admin API shows; references and the rest stay.
func TestRedactNATS(t *testing.T) {
	cfg := map[string]any{"spool": map[string]any{"kind": "jetstream", "nats": map[string]any{
		"urls": []any{"nats://10.0.0.1:4222"}, "user": "relay", "password": "hunter2", "token": "tok-123",
		"creds": "file:/run/secrets/nats.creds", "stream": "HOOKRELAY",
	}}}
	js, err := json.Marshal(redactConfig(cfg, false))
	if err != nil {
		t.Fatal(err)
	}
	out := string(js)
	for _, secret := range []string{"hunter2", "tok-123"} {
		if strings.Contains(out, secret) {
			t.Errorf("%s shown: %s", secret, out)
		}
	}
	for _, kept := range []string{"file:/run/secrets/nats.creds", "nats://10.0.0.1:4222", `"user":"relay"`, "HOOKRELAY"} {
		if !strings.Contains(out, kept) {
			t.Errorf("%s not shown: %s", kept, out)
		}
	}
}
