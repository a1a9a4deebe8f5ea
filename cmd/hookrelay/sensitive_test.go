package main

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// komparEncrypted is Kompar's {"data","iv"} body for plain under key
// (AES-256-CBC, PKCS#7), as Kompar sends it.
func komparEncrypted(t *testing.T, key, plain string) string {
	t.Helper()
	block, err := aes.NewCipher([]byte(key))
	must(t, err)
	iv := []byte("fedcba9876543210")
	pad := aes.BlockSize - len(plain)%aes.BlockSize
	pt := append([]byte(plain), bytes.Repeat([]byte{byte(pad)}, pad)...)
	ct := make([]byte, len(pt))
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(ct, pt)
	b, _ := json.Marshal(map[string]string{"data": base64.StdEncoding.EncodeToString(ct), "iv": base64.StdEncoding.EncodeToString(iv)})
	return string(b)
}

// TestTryAndTestMaskSensitive: `try` and `test` print the shipped Kompar
// provider's sensitive values as "***" (SPEC 11): the event's raw and data
// in try's output, and a failing case's "got" in test's.
func TestTryAndTestMaskSensitive(t *testing.T) {
	const key = "0123456789abcdef0123456789abcdef"
	env := map[string]string{"KOMPAR_WEBHOOK_TOKEN": "xxxxx-yyyyy-zzzzz", "KOMPAR_AES_KEY": key,
		"RELAY_PUBLIC_URL": "https://relay.example", "KOMPAR_API_URL": "https://api.kompar.example", "KOMPAR_API_TOKEN": "kompar-api-token"}
	for k, v := range env {
		t.Setenv(k, v)
	}
	dir := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(dir, "providers.d", "kompar.tests"), 0o755))
	shipped, err := os.ReadFile("../../providers.d/kompar.yaml")
	must(t, err)
	must(t, os.WriteFile(filepath.Join(dir, "providers.d", "kompar.yaml"), shipped, 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "relay.yaml"), []byte("destinations:\n  broker: { url: http://127.0.0.1:1/x }\n"), 0o644))

	ssn, guarantor, name, company := "197707077777", "198808088888", "Kanarie Utskriftsson", "Utskrift Kanarie AB"
	plain := `{"application_id":"KMP-TRY","name":"` + name + `","company_id":"556677-8899","company_name":"` + company +
		`","amount":500000,"ssn":"` + ssn + `","guarantors":[{"ssn":"` + guarantor + `"}]}`
	body := komparEncrypted(t, key, plain)
	req, _ := json.Marshal(map[string]any{"method": "POST", "path": "/in/kompar/applications",
		"headers": map[string]string{"Authorization": "token xxxxx-yyyyy-zzzzz", "Content-Type": "application/json"}, "body": json.RawMessage(body)})
	must(t, os.WriteFile(filepath.Join(dir, "req.json"), req, 0o644))

	code, out, errOut := runIn(t, dir, "try", "kompar", "req.json", "--config", "relay.yaml")
	if code != 0 {
		t.Fatalf("try: exit %d\n%s%s", code, out, errOut)
	}
	var trial struct {
		Event struct{ Raw, Data map[string]any }
	}
	must(t, json.Unmarshal([]byte(out), &trial))
	for _, f := range []string{"ssn", "name", "company_id", "company_name"} {
		if trial.Event.Raw[f] != "***" || trial.Event.Data[f] != "***" {
			t.Errorf("try: %s shown as raw %v, data %v; want ***", f, trial.Event.Raw[f], trial.Event.Data[f])
		}
	}
	if !strings.Contains(out, `"amount": 500000`) || !strings.Contains(out, `"key": "KMP-TRY"`) {
		t.Errorf("try: unmasked fields lost:\n%s", out)
	}

	// A case that expects other values fails, and says what it got masked.
	kase := "request:\n  path: /in/kompar/applications\n  headers:\n    Authorization: token xxxxx-yyyyy-zzzzz\n" +
		"  body: " + strconv.Quote(body) + "\nexpect:\n  outcome: accepted\n  event:\n    data:\n" +
		"      name: Someone Else\n      ssn: \"190001010000\"\n      guarantors: [{ssn: \"190001010001\"}]\n      company_name: Other AB\n"
	must(t, os.WriteFile(filepath.Join(dir, "providers.d", "kompar.tests", "canary.yaml"), []byte(kase), 0o644))
	code, testOut, testErr := runIn(t, dir, "test", "kompar", "--config", "relay.yaml")
	if code != 1 || !strings.Contains(testOut, "FAIL") || !strings.Contains(testOut, "***") {
		t.Fatalf("test: exit %d, want 1 with a masked failure\n%s%s", code, testOut, testErr)
	}
	_, jsonOut, _ := runIn(t, dir, "test", "kompar", "--config", "relay.yaml", "--json")
	for where, text := range map[string]string{"try": out + errOut, "test": testOut + testErr, "test --json": jsonOut} {
		for _, c := range []string{ssn, guarantor, name, company, "556677-8899"} {
			if strings.Contains(text, c) {
				t.Errorf("%s output shows %q:\n%s", where, c, text)
			}
		}
	}
}
