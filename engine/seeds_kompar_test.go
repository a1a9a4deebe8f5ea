package engine

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	"github.com/hookrelay/hookrelay/engine/spool"
)

// komparKey is KOMPAR_AES_KEY of shippedEnv: the key as given, 32 characters.
const komparKey = "0123456789abcdef0123456789abcdef"

var komparHeaders = map[string]string{"Authorization": "token xxxxx-yyyyy-zzzzz", "Content-Type": "application/json"}

// komparBody encrypts plain with AES-256-CBC (PKCS#7) under key into
// Kompar's {"data": base64, "iv": base64}.
func komparBody(t *testing.T, key, plain string) string {
	t.Helper()
	block, err := aes.NewCipher([]byte(key))
	must(t, err)
	iv := make([]byte, aes.BlockSize)
	_, err = rand.Read(iv)
	must(t, err)
	pad := aes.BlockSize - len(plain)%aes.BlockSize
	data := append([]byte(plain), bytes.Repeat([]byte{byte(pad)}, pad)...)
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(data, data)
	b, err := json.Marshal(map[string]string{
		"data": base64.StdEncoding.EncodeToString(data), "iv": base64.StdEncoding.EncodeToString(iv),
	})
	must(t, err)
	return string(b)
}

var komparDataNames = []string{"application_id", "name", "company_id", "company_name", "company_type",
	"company_revenue", "company_age", "amount", "duration", "purpose", "ssn", "guarantors",
	"company_last_year_revenue", "company_description", "attachments", "description_of_property"}

func TestSeedKompar(t *testing.T) {
	tr, rec := seedRelay(t, mustAbs(t, "../providers.d"), nil)

	// Every field of the document's table, the lender-specific ones included.
	application := `{"application_id":"KMP-2024-000123","name":"Anna Andersson","company_id":"556677-8899",` +
		`"company_name":"Andersson Bygg AB","company_type":"AB","company_revenue":125000.5,"company_age":4.5,` +
		`"amount":500000,"duration":24,"purpose":"working_capital","ssn":"198001011234",` +
		`"guarantors":[{"ssn":"197502023456"},{"ssn":"198203034567"}],` +
		`"company_last_year_revenue":1400000.75,"company_description":"Construction and renovation in Göteborg",` +
		`"attachments":["annual-report-2023.pdf","bank-statement-2024-09.pdf"],` +
		`"description_of_property":"Office building, 400 m², Hisingen"}`
	decision := `{"application_id":"KMP-2024-000123"}`
	seedAccept(t, tr, "/in/kompar/applications", komparBody(t, komparKey, application), komparHeaders)
	seedAccept(t, tr, "/in/kompar/decisions", komparBody(t, komparKey, decision), komparHeaders)

	// Refused: a wrong token, none, another scheme.
	good := komparBody(t, komparKey, `{"application_id":"KMP-forged"}`)
	seedRefuse(t, tr, "kompar", "/in/kompar/applications", good,
		map[string]string{"Authorization": "token aaaaa-bbbbb-ccccc", "Content-Type": "application/json"})
	seedRefuse(t, tr, "kompar", "/in/kompar/applications", good, map[string]string{"Content-Type": "application/json"})
	seedRefuse(t, tr, "kompar", "/in/kompar/decisions", good,
		map[string]string{"Authorization": "Bearer xxxxx-yyyyy-zzzzz", "Content-Type": "application/json"})

	// A verified request that cannot be decrypted is kept, not delivered.
	wrongKey := komparBody(t, "ffffffffffffffffffffffffffffffff", `{"application_id":"KMP-wrong-key"}`)
	seedAccept(t, tr, "/in/kompar/applications", wrongKey, komparHeaders)

	// An unknown hook path is verified and decrypted, but no hook of
	// Kompar's has that name: it is quarantined (see kompar.yaml), not
	// delivered, so that it can be reprocessed once the config knows it.
	unknown := komparBody(t, komparKey, `{"application_id":"KMP-2024-000124"}`)
	seedAccept(t, tr, "/in/kompar/other", unknown, komparHeaders)

	seedExpect(t, tr, rec, "kompar", []seedEvent{
		{typ: "application.submitted", key: "KMP-2024-000123", idem: sha256IdemRE("kompar"), raw: application,
			data: seedData(t, komparDataNames, application)},
		{typ: "application.decision", key: "KMP-2024-000123", idem: sha256IdemRE("kompar"), raw: decision,
			data: seedData(t, komparDataNames, decision)},
	})
	// The decision goes after the application of the same key.
	got := rec.delivered(t)
	if got[0]["type"] != "application.submitted" {
		t.Errorf("first delivery is %v, want the application", got[0]["type"])
	}

	quarantined := map[string]*spool.Quarantined{}
	qs, err := tr.spool.QuarantineList("", 0)
	must(t, err)
	for _, q := range qs {
		quarantined[q.Path] = q
	}
	if len(quarantined) != 2 {
		t.Errorf("%d quarantined, want the undecryptable one and the unknown hook", len(quarantined))
	}
	if q := quarantined["/in/kompar/applications"]; q == nil {
		t.Error("the request under the wrong AES key was not quarantined")
	} else if q.Provider != "kompar" || string(q.Body) != wrongKey || !strings.Contains(q.Reason, "decrypt") ||
		strings.Contains(q.Reason, komparKey) {
		t.Errorf("quarantined %s %s: %q", q.Provider, q.Body, q.Reason)
	}
	if q := quarantined["/in/kompar/other"]; q == nil {
		t.Error("the request to an unknown hook was not quarantined")
	} else if q.Provider != "kompar" || q.Params["hook"] != "other" || string(q.Body) != unknown {
		t.Errorf("quarantined %s %v %s: %q", q.Provider, q.Params, q.Body, q.Reason)
	}
}
