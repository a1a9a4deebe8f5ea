package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// The shipped Kompar file registers and unregisters through the command,
// which exits 1 on a refusal and prints no secret.
func TestRegisterCommand(t *testing.T) {
	const token = "kompar-api-token-cmd"
	var mu sync.Mutex
	var got []string
	answer := `{"success": true}`
	lender := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, r.Method+" "+r.URL.Path+" "+r.Header.Get("Authorization")+" "+string(b))
		a := answer
		mu.Unlock()
		io.WriteString(w, a)
	}))
	defer lender.Close()
	for k, v := range map[string]string{
		"KOMPAR_WEBHOOK_TOKEN": "xxxxx-yyyyy-zzzzz", "KOMPAR_AES_KEY": "0123456789abcdef0123456789abcdef",
		"KOMPAR_API_URL": lender.URL, "KOMPAR_API_TOKEN": token, "RELAY_PUBLIC_URL": "https://relay.example",
	} {
		t.Setenv(k, v)
	}
	dir := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(dir, "providers.d"), 0o755))
	kompar, err := os.ReadFile("../../providers.d/kompar.yaml")
	must(t, err)
	must(t, os.WriteFile(filepath.Join(dir, "providers.d", "kompar.yaml"), kompar, 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "relay.yaml"), []byte("destinations:\n  broker: { url: \"http://127.0.0.1:1/b\" }\n"), 0o644))

	if code, out, errOut := runIn(t, dir, "register", "kompar"); code != 0 || out != "registered kompar\n" {
		t.Fatalf("register: exit %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut := runIn(t, dir, "unregister", "kompar"); code != 0 || out != "unregistered kompar\n" {
		t.Fatalf("unregister: exit %d\n%s%s", code, out, errOut)
	}
	want := []string{
		`POST /webhooks/applications token ` + token + ` {"url": "https://relay.example/in/kompar/applications"}`,
		`POST /webhooks/decisions token ` + token + ` {"url": "https://relay.example/in/kompar/decisions"}`,
		`DELETE /webhooks/applications token ` + token + ` `,
		`DELETE /webhooks/decisions token ` + token + ` `,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("requests:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	answer = `{"success": false, "echo": "token ` + token + `"}`
	code, out, errOut := runIn(t, dir, "register", "kompar")
	if code != 1 || out != "" || !strings.Contains(errOut, "hookrelay: register kompar: POST <values.base_url>/webhooks/applications: status 200, success is false") {
		t.Errorf("refused: exit %d\n%s%s", code, out, errOut)
	}
	if strings.Contains(out+errOut, token) {
		t.Errorf("the token was printed: %s%s", out, errOut)
	}

	if code, _, errOut := runIn(t, dir, "register", "nobody"); code != 1 || !strings.Contains(errOut, `no provider "nobody"`) {
		t.Errorf("unknown provider: exit %d %s", code, errOut)
	}
	if code, _, _ := runIn(t, dir, "register"); code != 2 {
		t.Errorf("no provider named: exit %d, want 2", code)
	}
}
