package engine

// Every example of the lenders' documents (../../shared/seeds, SPEC 10) goes
// through the real ingest listener with the shipped providers.d, signed the
// way its document says, and must reach the broker as the expected canonical
// event; every forged, tampered or replayed variant must be refused (401,
// recorded in the rejections, nothing delivered) or dropped as a repeat.

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
	"github.com/stripe/stripe-go/v82/webhook"

	"github.com/hookrelay/hookrelay/engine/spool"
)

// seedDir holds the documents' example payloads (see its README.md).
const seedDir = "testdata/seeds"

// seedWait bounds every wait for deliveries.
const seedWait = 10 * time.Second

// seedRelay sets every secret of the shipped providers (shippedEnv, then env
// on top) and starts a relay on providersDir with one destination, broker, at
// a new recorder.
func seedRelay(t *testing.T, providersDir string, env map[string]string) (*testRelay, *recorder) {
	t.Helper()
	for k, v := range shippedEnv {
		t.Setenv(k, v)
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
	rec := newRecorder(t, nil)
	dir := t.TempDir()
	relay := "listen: 127.0.0.1:18080\nadmin: { listen: 127.0.0.1:19090 }\nspool: { path: ./spool.db }\n" +
		"providers_dir: " + strconv.Quote(providersDir) + "\n" +
		"destinations:\n  broker:\n    url: " + strconv.Quote(rec.srv.URL+"/lender-events") + "\n"
	writeConfig(t, dir, relay, nil)
	return openRelay(t, dir), rec
}

// seedProviderCopy writes the given provider files into a new providers dir
// and returns its path.
func seedProviderCopy(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "providers.d")
	must(t, os.MkdirAll(dir, 0o755))
	for name, body := range files {
		must(t, os.WriteFile(filepath.Join(dir, name+".yaml"), []byte(body), 0o644))
	}
	return dir
}

// shippedProvider reads providers.d/NAME.yaml.
func shippedProvider(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "providers.d", name+".yaml"))
	must(t, err)
	return string(b)
}

func seedFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(seedDir, name))
	must(t, err)
	return string(b)
}

// seedPost sends a request to the ingest listener and returns status and body.
func seedPost(t *testing.T, tr *testRelay, path, body string, headers map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, tr.Ingest.URL+path, strings.NewReader(body))
	must(t, err)
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := testClient(tr.t).Do(req)
	must(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// seedAccept posts a request the provider must take: 200.
func seedAccept(t *testing.T, tr *testRelay, path, body string, headers map[string]string) {
	t.Helper()
	if status, resp := seedPost(t, tr, path, body, headers); status != http.StatusOK {
		t.Fatalf("POST %s: %d %s, want 200", path, status, resp)
	}
}

// seedRefuse posts a request the provider must refuse: 401 with a reason,
// and the rejection recorded with the path and the body's hash.
func seedRefuse(t *testing.T, tr *testRelay, provider, path, body string, headers map[string]string) {
	t.Helper()
	before := len(tr.rejections.List(provider, 1000))
	status, resp := seedPost(t, tr, path, body, headers)
	var e struct{ Error string }
	if status != http.StatusUnauthorized || json.Unmarshal([]byte(resp), &e) != nil || e.Error == "" {
		t.Errorf("POST %s: %d %s, want 401 with a reason", path, status, resp)
		return
	}
	got := tr.rejections.List(provider, 1000)
	if len(got) != before+1 {
		t.Errorf("POST %s: %d rejections recorded for %s, want %d", path, len(got), provider, before+1)
		return
	}
	sum := sha256.Sum256([]byte(body))
	rj := got[0]
	wantPath, _, _ := strings.Cut(path, "?")
	if rj.Path != wantPath || rj.Reason != e.Error || rj.BodySHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("rejection recorded as %+v; want path %s, reason %q and the body's sha256", rj, wantPath, e.Error)
	}
}

// seedEvent is a canonical event the broker must receive.
type seedEvent struct {
	typ, key string
	idem     *regexp.Regexp // shape of idempotency_id
	data     map[string]any // data, exactly
	raw      string         // the provider body (decrypted), as JSON
	occurred string         // occurred_at; "" means none
	sequence float64
}

var ulidRE = regexp.MustCompile(`^[0-9A-HJKMNP-TV-Z]{26}$`)

// seedData is data with every name of names present: those in setJSON (a
// JSON object) with their values, the others null.
func seedData(t *testing.T, names []string, setJSON string) map[string]any {
	t.Helper()
	m := map[string]any{}
	must(t, json.Unmarshal([]byte(setJSON), &m))
	for _, n := range names {
		if _, ok := m[n]; !ok {
			m[n] = nil
		}
	}
	return m
}

func seedJSON(t *testing.T, s string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("not JSON: %v: %s", err, s)
	}
	return v
}

// seedExpect waits for exactly len(want) deliveries (until tr holds no
// delivery, after which no extra one can come), checks each envelope and its
// headers, and returns the envelopes in the order of want. Deliveries and
// want are matched by raw.
func seedExpect(t *testing.T, tr *testRelay, rec *recorder, provider string, want []seedEvent) []map[string]any {
	t.Helper()
	waitFor(t, seedWait, fmt.Sprintf("%d deliveries and nothing queued", len(want)), func() bool {
		return len(rec.requests()) >= len(want) && tr.settled()
	})
	got := rec.requests()
	if len(got) != len(want) {
		for _, r := range got {
			var ev map[string]any
			_ = json.Unmarshal(r.Body, &ev)
			t.Logf("delivered: %v %v %v", ev["type"], ev["key"], ev["idempotency_id"])
		}
		t.Fatalf("%d deliveries, want %d", len(got), len(want))
	}
	out := make([]map[string]any, len(want))
	used := make([]bool, len(got))
	for i, w := range want {
		wantRaw := seedJSON(t, w.raw)
		for j, r := range got {
			var ev map[string]any
			must(t, json.Unmarshal(r.Body, &ev))
			if used[j] || !reflect.DeepEqual(ev["raw"], wantRaw) {
				continue
			}
			used[j] = true
			out[i] = ev
			seedCheck(t, r, ev, provider, w)
			break
		}
		if out[i] == nil {
			t.Errorf("no delivery of %s %s with raw %s", w.typ, w.key, w.raw)
		}
	}
	return out
}

func seedCheck(t *testing.T, r received, ev map[string]any, provider string, w seedEvent) {
	t.Helper()
	what := fmt.Sprintf("%s %s", w.typ, w.key)
	if r.Path != "/lender-events" {
		t.Errorf("%s: delivered to %s", what, r.Path)
	}
	if ev["type"] != w.typ || ev["key"] != w.key || ev["provider"] != provider || ev["source"] != "webhook" {
		t.Errorf("%s: delivered type %v, key %v, provider %v, source %v", what, ev["type"], ev["key"], ev["provider"], ev["source"])
	}
	if id, _ := ev["id"].(string); !ulidRE.MatchString(id) {
		t.Errorf("%s: id %q is not a ULID", what, ev["id"])
	}
	idem, _ := ev["idempotency_id"].(string)
	if !w.idem.MatchString(idem) {
		t.Errorf("%s: idempotency_id %q does not match %s", what, idem, w.idem)
	}
	if ev["sequence"] != w.sequence {
		t.Errorf("%s: sequence %v, want %v", what, ev["sequence"], w.sequence)
	}
	if at, _ := ev["received_at"].(string); at == "" {
		t.Errorf("%s: no received_at", what)
	} else if _, err := time.Parse(time.RFC3339Nano, at); err != nil {
		t.Errorf("%s: received_at %q: %v", what, at, err)
	}
	if got, _ := ev["occurred_at"].(string); got != w.occurred {
		t.Errorf("%s: occurred_at %q, want %q", what, got, w.occurred)
	}
	if !reflect.DeepEqual(ev["data"], w.data) {
		gotData, _ := json.Marshal(ev["data"])
		wantData, _ := json.Marshal(w.data)
		t.Errorf("%s: data\n got %s\nwant %s", what, gotData, wantData)
	}
	for h, want := range map[string]string{
		"Idempotency-Key": idem, "X-Hookrelay-Provider": provider, "X-Hookrelay-Event-Type": w.typ,
		"X-Hookrelay-Event-Id": fmt.Sprint(ev["id"]), "X-Hookrelay-Attempt": "1",
	} {
		if got := r.Header.Get(h); got != want {
			t.Errorf("%s: header %s = %q, want %q", what, h, got, want)
		}
	}
}

// sha256IdemRE is the shape of an idempotency id made from the body's hash.
func sha256IdemRE(provider string) *regexp.Regexp {
	return regexp.MustCompile(`^` + regexp.QuoteMeta(provider) + `:[0-9a-f]{64}$`)
}

// ---------------------------------------------------------------- Resurs (001)

// resursPlaceholder is the jwsData of the document's examples.
const resursPlaceholder = "eyJOXAiOLADikz.eyJpc3MiJgbDQrm4.djjft4CP-mbW1"

// resursAPIKey is what the JWKS endpoint wants in its apikey header.
const resursAPIKey = "resurs-jwks-apikey"

// resursKey is one RSA signing key of Resurs, with its kid.
type resursKey struct {
	priv jwk.Key
	pub  jwk.Key
}

func newResursKey(t *testing.T, kid string) resursKey {
	t.Helper()
	raw, err := rsa.GenerateKey(rand.Reader, 2048)
	must(t, err)
	priv, err := jwk.FromRaw(raw)
	must(t, err)
	pub, err := jwk.FromRaw(&raw.PublicKey)
	must(t, err)
	for _, k := range []jwk.Key{priv, pub} {
		must(t, k.Set(jwk.KeyIDKey, kid))
		must(t, k.Set(jwk.AlgorithmKey, jwa.RS256))
		must(t, k.Set(jwk.KeyUsageKey, "sig"))
	}
	return resursKey{priv: priv, pub: pub}
}

// sign makes a compact RS256 JWS over payload, with kid in its protected header.
func (k resursKey) sign(t *testing.T, kid string, payload []byte) string {
	t.Helper()
	hdr := jws.NewHeaders()
	must(t, hdr.Set(jws.KeyIDKey, kid))
	tok, err := jws.Sign(payload, jws.WithKey(jwa.RS256, k.priv, jws.WithProtectedHeaders(hdr)))
	must(t, err)
	return string(tok)
}

// jwksServer serves Resurs' JWK set, only to requests with the apikey header.
type jwksServer struct {
	url     string
	mu      sync.Mutex
	set     jwk.Set
	fetches int
}

func newJWKSServer(t *testing.T, keys ...resursKey) *jwksServer {
	s := &jwksServer{set: jwk.NewSet()}
	for _, k := range keys {
		s.publish(t, k)
	}
	srv := newLoopbackServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("apikey") != resursAPIKey {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		s.mu.Lock()
		s.fetches++
		b, err := json.Marshal(s.set)
		s.mu.Unlock()
		if err != nil {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(b)
	}))
	s.url = srv + "/api/auth_service/jwks"
	return s
}

func (s *jwksServer) publish(t *testing.T, k resursKey) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	must(t, s.set.AddKey(k.pub))
}

func (s *jwksServer) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fetches
}

// newLoopbackServer is an httptest server on 127.0.0.1 that stops with the
// test; it returns the base URL.
func newLoopbackServer(t *testing.T, h http.Handler) string {
	srv := testServer(t, h)
	if !strings.HasPrefix(srv.URL, "http://127.0.0.1:") {
		t.Fatalf("test server at %s, want 127.0.0.1", srv.URL)
	}
	return srv.URL
}

// resursCallback is a document example with its placeholder jwsData
// replaced by a real JWS (keeping the document's leading space) over the
// callback without jwsData; it returns the body and the signed payload.
func resursCallback(t *testing.T, doc string, k resursKey, kid string) (string, []byte) {
	t.Helper()
	var m map[string]any
	must(t, json.Unmarshal([]byte(doc), &m))
	delete(m, "jwsData")
	payload, err := json.Marshal(m)
	must(t, err)
	if !strings.Contains(doc, resursPlaceholder) {
		t.Fatal("document example without the jwsData placeholder")
	}
	return strings.Replace(doc, resursPlaceholder, k.sign(t, kid, payload), 1), payload
}

// resursDataNames are the data fields of providers.d/resurs.yaml.
var resursDataNames = []string{"application_reference", "event_type", "decision", "approved_amount", "interest",
	"effective_interest", "tenor", "monthly_cost", "consolidation_demand", "admin_fee", "arrangement_fee",
	"total_repayment_amount", "monthly_account_fee", "total_fees_and_interest", "document_types", "required_documents"}

var resursHeaders = map[string]string{"Content-Type": "application/json"}

func TestSeedResurs(t *testing.T) {
	const kid = "1cb06a4a-3465-4f11-ac3d-d8bb2bdb1eb7" // the document's first kid
	key := newResursKey(t, kid)
	other := newResursKey(t, kid) // a forger's key, under the same kid
	keys := newJWKSServer(t, key)

	// The JWKS needs the apikey header.
	resp, err := http.Get(keys.url)
	must(t, err)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("JWKS without apikey: %d, want 401", resp.StatusCode)
	}

	tr, rec := seedRelay(t, mustAbs(t, "../providers.d"), map[string]string{
		"RESURS_JWKS_URL": keys.url, "RESURS_JWKS_APIKEY": resursAPIKey,
	})

	cases := []struct {
		file, typ, key, data string
	}{
		{"signed.json", "application.signed", "ABC-123",
			`{"application_reference":"ABC-123","event_type":"SIGNED"}`},
		{"credit_decision_approved.json", "application.approved", "abc-123-def-567",
			`{"application_reference":"abc-123-def-567","event_type":"CREDIT_DECISION_UPDATED","decision":"APPROVED",
			  "approved_amount":10000,"interest":12.3,"tenor":12,"effective_interest":23.3,"monthly_cost":1234,
			  "consolidation_demand":2300,"admin_fee":199,"arrangement_fee":599.99,"total_repayment_amount":13000,
			  "monthly_account_fee":0,"total_fees_and_interest":3000,"document_types":["ID","PAYMENT_SLIP"]}`},
		{"credit_decision_rejected.json", "application.rejected", "abc-123-def-567",
			`{"application_reference":"abc-123-def-567","event_type":"CREDIT_DECISION_UPDATED","decision":"REJECTED","approved_amount":0}`},
		{"waiting_for_addition.json", "application.waiting_for_documents", "abc-123-def-567",
			`{"application_reference":"abc-123-def-567","event_type":"WAITING_FOR_ADDITION","required_documents":["ID"]}`},
		{"paid_out.json", "application.paid_out", "ABC-123",
			`{"application_reference":"ABC-123","event_type":"PAID_OUT"}`},
	}
	var want []seedEvent
	bodies := map[string]string{}
	payloads := map[string][]byte{}
	for _, c := range cases {
		doc := seedFile(t, "resurs/"+c.file)
		body, payload := resursCallback(t, doc, key, kid)
		if strings.Contains(doc, `" `+resursPlaceholder) && !strings.Contains(body, `"jwsData" : " eyJ`) {
			t.Fatalf("%s: the leading space of jwsData was lost", c.file)
		}
		bodies[c.file], payloads[c.file] = body, payload
		seedAccept(t, tr, "/in/resurs", body, resursHeaders)
		want = append(want, seedEvent{typ: c.typ, key: c.key, idem: sha256IdemRE("resurs"),
			data: seedData(t, resursDataNames, c.data), raw: body})
	}
	if keys.count() == 0 {
		t.Error("the relay never fetched the JWKS")
	}

	// Replayed: the same callback again is answered 200 and not forwarded again.
	seedAccept(t, tr, "/in/resurs", bodies["signed.json"], resursHeaders)

	// Forged: signed with another key under the published kid.
	forged, _ := resursCallback(t, seedFile(t, "resurs/signed.json"), other, kid)
	seedRefuse(t, tr, "resurs", "/in/resurs", forged, resursHeaders)

	// Tampered: another applicationReference under the original jwsData (must-match).
	tampered := strings.Replace(bodies["credit_decision_approved.json"], `"abc-123-def-567"`, `"abc-999-def-000"`, 1)
	seedRefuse(t, tr, "resurs", "/in/resurs", tampered, resursHeaders)
	// Tampered amount only, same reference.
	tampered = strings.Replace(bodies["credit_decision_approved.json"], `"approvedAmount" : 10000`, `"approvedAmount" : 90000`, 1)
	seedRefuse(t, tr, "resurs", "/in/resurs", tampered, resursHeaders)

	// alg none: an unsigned token over the original payload.
	b64 := base64.RawURLEncoding.EncodeToString
	none := b64([]byte(`{"alg":"none","kid":"`+kid+`"}`)) + "." + b64(payloads["signed.json"]) + "."
	seedRefuse(t, tr, "resurs", "/in/resurs",
		strings.Replace(seedFile(t, "resurs/signed.json"), resursPlaceholder, none, 1), resursHeaders)

	// Algorithm confusion: HS256 with the public key as the MAC secret.
	pubDER, err := json.Marshal(key.pub)
	must(t, err)
	hdr := jws.NewHeaders()
	must(t, hdr.Set(jws.KeyIDKey, kid))
	hs, err := jws.Sign(payloads["signed.json"], jws.WithKey(jwa.HS256, pubDER, jws.WithProtectedHeaders(hdr)))
	must(t, err)
	seedRefuse(t, tr, "resurs", "/in/resurs",
		strings.Replace(seedFile(t, "resurs/signed.json"), resursPlaceholder, string(hs), 1), resursHeaders)

	// A kid the JWKS does not have.
	unknown, _ := resursCallback(t, seedFile(t, "resurs/paid_out.json"), other, "not-published")
	seedRefuse(t, tr, "resurs", "/in/resurs", unknown, resursHeaders)

	// No jwsData at all, and a jwsData that is no JWS (the document's placeholder).
	seedRefuse(t, tr, "resurs", "/in/resurs", string(payloads["signed.json"]), resursHeaders)
	seedRefuse(t, tr, "resurs", "/in/resurs", seedFile(t, "resurs/signed.json"), resursHeaders)

	seedExpect(t, tr, rec, "resurs", want)
}

// TestSeedResursKeyRotation publishes a new key with a new kid after the
// relay has cached the set; a callback signed with it must be accepted. The
// shipped file refetches on an unknown kid at most once per min_refresh
// (default 1m), so this runs on a copy of resurs.yaml with min_refresh: 10ms.
func TestSeedResursKeyRotation(t *testing.T) {
	const kid1, kid2 = "1cb06a4a-3465-4f11-ac3d-d8bb2bdb1eb7", "e434a27b-e1fb-4f7f-89d6-fb4e95619aac"
	k1, k2 := newResursKey(t, kid1), newResursKey(t, kid2)
	keys := newJWKSServer(t, k1)

	yaml := shippedProvider(t, "resurs")
	const anchor = "    jwks_url: env:RESURS_JWKS_URL\n"
	if !strings.Contains(yaml, anchor) {
		t.Fatalf("resurs.yaml has no %q line", strings.TrimSpace(anchor))
	}
	yaml = strings.Replace(yaml, anchor, anchor+"    min_refresh: 10ms\n", 1)
	tr, rec := seedRelay(t, seedProviderCopy(t, map[string]string{"resurs": yaml}), map[string]string{
		"RESURS_JWKS_URL": keys.url, "RESURS_JWKS_APIKEY": resursAPIKey,
	})

	first, _ := resursCallback(t, seedFile(t, "resurs/signed.json"), k1, kid1)
	seedAccept(t, tr, "/in/resurs", first, resursHeaders)
	fetched := keys.count()

	// Before the new key is published, a token under it is refused, also
	// once the set was fetched again for its kid (min_refresh after the
	// first fetch).
	second, _ := resursCallback(t, seedFile(t, "resurs/paid_out.json"), k2, kid2)
	waitFor(t, seedWait, "a fetch of the set for the unknown kid", func() bool {
		seedRefuse(t, tr, "resurs", "/in/resurs", second, resursHeaders)
		return keys.count() > fetched
	})
	refused := keys.count()

	// Once it is published, the next fetch min_refresh allows finds it.
	keys.publish(t, k2)
	waitFor(t, seedWait, "the callback under the new key accepted", func() bool {
		status, _ := seedPost(t, tr, "/in/resurs", second, resursHeaders)
		return status == http.StatusOK
	})
	if keys.count() <= refused {
		t.Errorf("the JWKS was not fetched again for the new kid (%d fetches)", keys.count())
	}
	// The old key still verifies.
	third, _ := resursCallback(t, seedFile(t, "resurs/waiting_for_addition.json"), k1, kid1)
	seedAccept(t, tr, "/in/resurs", third, resursHeaders)

	seedExpect(t, tr, rec, "resurs", []seedEvent{
		{typ: "application.signed", key: "ABC-123", idem: sha256IdemRE("resurs"), raw: first,
			data: seedData(t, resursDataNames, `{"application_reference":"ABC-123","event_type":"SIGNED"}`)},
		{typ: "application.paid_out", key: "ABC-123", idem: sha256IdemRE("resurs"), raw: second,
			data: seedData(t, resursDataNames, `{"application_reference":"ABC-123","event_type":"PAID_OUT"}`)},
		{typ: "application.waiting_for_documents", key: "abc-123-def-567", idem: sha256IdemRE("resurs"), raw: third,
			data: seedData(t, resursDataNames, `{"application_reference":"abc-123-def-567","event_type":"WAITING_FOR_ADDITION","required_documents":["ID"]}`)},
	})
}

// ---------------------------------------------------------------- Kompar (002)

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

// ---------------------------------------------------------------- Avida (003)

var avidaEvents = []struct{ event, typ string }{
	{"approved", "application.approved"},
	{"declined", "application.rejected"},
	{"canceled", "application.canceled"},
	{"document-sent", "documents.sent"},
	{"document-signed", "application.signed"},
	{"ready-for-disbursement", "application.ready_for_payout"},
	{"disbursed", "application.paid_out"},
}

var avidaDataNames = []string{"application_id", "external_application_id", "agent_id", "product",
	"approved_amount", "duration", "payload"}

// avidaData is the data the shipped avida.yaml makes of the document's example.
const avidaData = `{"application_id":"string","external_application_id":"string","agent_id":"string",
	"product":"string","approved_amount":0,"duration":0,
	"payload":{"product":"string","approvedAmount":0,"duration":0}}`

func basicAuth(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

func TestSeedAvida(t *testing.T) {
	tr, rec := seedRelay(t, mustAbs(t, "../providers.d"), nil)
	auth := map[string]string{"Authorization": basicAuth("hookrelay", shippedEnv["AVIDA_BASIC_PASSWORD"]),
		"Content-Type": "application/json"}
	example := seedFile(t, "avida/approved.json")

	var want []seedEvent
	// MultiEndpoint: the document's example, as it is, on every event's URL.
	// The body alone is the same for all seven: the type is in the path.
	for _, e := range avidaEvents {
		seedAccept(t, tr, "/in/avida/"+e.event, example, auth)
		want = append(want, seedEvent{typ: e.typ, key: "string", idem: sha256IdemRE("avida"), raw: example,
			occurred: "2024-10-24T17:21:35.531Z", data: seedData(t, avidaDataNames, avidaData)})
	}
	// A resend of one of them is a repeat.
	seedAccept(t, tr, "/in/avida/approved", example, auth)

	// SingleEndpoint: the type in the payload.
	for i, e := range avidaEvents {
		body := fmt.Sprintf(`{"eventType":%q,"applicationId":"APP-%d","externalApplicationId":"EXT-%d","agentId":"agent-7",`+
			`"timestamp":"2024-10-25T08:00:0%dZ","payload":{"product":"privatlan","approvedAmount":150000,"duration":60}}`,
			e.event, i, i, i)
		seedAccept(t, tr, "/in/avida", body, auth)
		want = append(want, seedEvent{typ: e.typ, key: fmt.Sprintf("APP-%d", i), idem: sha256IdemRE("avida"), raw: body,
			occurred: fmt.Sprintf("2024-10-25T08:00:0%dZ", i),
			data: seedData(t, avidaDataNames, fmt.Sprintf(`{"application_id":"APP-%d","external_application_id":"EXT-%d",`+
				`"agent_id":"agent-7","product":"privatlan","approved_amount":150000,"duration":60,`+
				`"payload":{"product":"privatlan","approvedAmount":150000,"duration":60}}`, i, i))})
	}

	// Basic: wrong password, wrong user, none, another scheme.
	ct := map[string]string{"Content-Type": "application/json"}
	for _, h := range []map[string]string{
		{"Authorization": basicAuth("hookrelay", "wrong")},
		{"Authorization": basicAuth("intruder", shippedEnv["AVIDA_BASIC_PASSWORD"])},
		ct,
		{"Authorization": "Bearer " + shippedEnv["AVIDA_BASIC_PASSWORD"]},
	} {
		seedRefuse(t, tr, "avida", "/in/avida/approved", strings.Replace(example, `"string"`, `"refused"`, 1), h)
	}
	seedExpect(t, tr, rec, "avida", want)
}

// TestSeedAvidaAuth runs the other three ways Avida authenticates (four
// variants), each on a copy of avida.yaml whose verify block is replaced as
// its comments show.
func TestSeedAvidaAuth(t *testing.T) {
	const key = "6736bbb4f4b4ebab8c0df4b139395b9" // the document's example key
	yaml := shippedProvider(t, "avida")
	start, end := strings.Index(yaml, "\nverify:\n"), strings.Index(yaml, "\nevent:\n")
	if start < 0 || end < start {
		t.Fatal("avida.yaml: no verify block before event")
	}
	example := seedFile(t, "avida/approved.json")
	for _, c := range []struct {
		name, verify     string
		path             string            // with the credential in the query, for query keys
		right, wrong     map[string]string // headers
		wrongPath, noKey string
	}{
		{name: "token with Bearer scheme",
			verify: `- { kind: token, header: Authorization, prefix: "Bearer ", token: env:AVIDA_API_KEY }`,
			right:  map[string]string{"Authorization": "Bearer " + key},
			wrong:  map[string]string{"Authorization": "Bearer " + key + "x"}},
		{name: "token without scheme",
			verify: `- { kind: token, header: Authorization, prefix: "", token: env:AVIDA_API_KEY }`,
			right:  map[string]string{"Authorization": key},
			wrong:  map[string]string{"Authorization": "Bearer " + key}},
		{name: "header API-KEY",
			verify: `- { kind: apikey, in: header, name: API-KEY, key: env:AVIDA_API_KEY }`,
			right:  map[string]string{"API-KEY": key},
			wrong:  map[string]string{"API-KEY": "0000bbb4f4b4ebab8c0df4b139395b9"}},
		{name: "header with a custom name",
			verify: `- { kind: apikey, in: header, name: X-Avida-Key, key: env:AVIDA_API_KEY }`,
			right:  map[string]string{"X-Avida-Key": key},
			wrong:  map[string]string{"API-KEY": key}}, // the default name is not this provider's
		{name: "query API-KEY",
			verify:    `- { kind: apikey, in: query, name: API-KEY, key: env:AVIDA_API_KEY }`,
			path:      "?API-KEY=" + key,
			wrongPath: "?API-KEY=" + key + "x",
			noKey:     "?api-key=" + key}, // query names are case-sensitive
	} {
		t.Run(c.name, func(t *testing.T) {
			variant := yaml[:start] + "\nverify:\n  " + c.verify + yaml[end:]
			tr, rec := seedRelay(t, seedProviderCopy(t, map[string]string{"avida": variant}),
				map[string]string{"AVIDA_API_KEY": key})
			ct := map[string]string{"Content-Type": "application/json"}
			with := func(h map[string]string) map[string]string {
				out := map[string]string{"Content-Type": "application/json"}
				for k, v := range h {
					out[k] = v
				}
				return out
			}
			seedAccept(t, tr, "/in/avida/approved"+c.path, example, with(c.right))
			refused := strings.Replace(example, `"string"`, `"refused"`, 1)
			if c.wrong != nil {
				seedRefuse(t, tr, "avida", "/in/avida/approved", refused, with(c.wrong))
			}
			if c.wrongPath != "" {
				seedRefuse(t, tr, "avida", "/in/avida/approved"+c.wrongPath, refused, ct)
				seedRefuse(t, tr, "avida", "/in/avida/approved"+c.noKey, refused, ct)
			}
			seedRefuse(t, tr, "avida", "/in/avida/approved", refused, ct) // no credential
			seedExpect(t, tr, rec, "avida", []seedEvent{{typ: "application.approved", key: "string",
				idem: sha256IdemRE("avida"), raw: example, occurred: "2024-10-24T17:21:35.531Z",
				data: seedData(t, avidaDataNames, avidaData)}})
		})
	}
}

// ---------------------------------------------------------------- Nordiska (004)

// nordiskaHeaders are the document's headers for body signed at ts with secret.
func nordiskaHeaders(body string, ts time.Time, secret, token string) map[string]string {
	stamp := ts.UTC().Format(time.RFC3339)
	return map[string]string{
		"X-Card-Onboarding-Signature": hmacHex(secret, stamp+":"+body),
		"X-Card-Onboarding-Timestamp": stamp,
		"Authorization":               "Bearer " + token,
		"Content-Type":                "application/json",
	}
}

var nordiskaDataNames = []string{"onboarding_id", "signing_url", "engagement_id", "reject_reason", "failure_code"}

func TestSeedNordiska(t *testing.T) {
	tr, rec := seedRelay(t, mustAbs(t, "../providers.d"), nil)
	secret, token := shippedEnv["NORDISKA_SIGNING_SECRET"], shippedEnv["NORDISKA_AUTH_TOKEN"]
	const onboarding = "7a0d9433-4f64-4f93-919c-5ab7d81eea55"

	type example struct{ body, typ, data string }
	examples := []example{
		{seedFile(t, "nordiska/signing_session_created.json"), "signing.created",
			`{"signing_url":"https://sign.dev.nordiska.com/?sessionId=1fa6ef79-16e7-4665-ae78-c885e65e372b"}`},
		{seedFile(t, "nordiska/signing_session_completed.json"), "application.signed", `{}`},
		{seedFile(t, "nordiska/onboarding_completed.json"), "onboarding.completed",
			`{"engagement_id":"8b9fd836-9d01-4c91-b0e0-17dfc26944e9"}`},
	}
	rejected := seedFile(t, "nordiska/onboarding_rejected.json")
	for _, reason := range []string{"KYC_DENIAL", "KYB_DENIAL", "CREDIT_SCORING_DENIAL", "UNAUTHORIZED_SIGNATORY", "INVALID_DOCUMENTS"} {
		examples = append(examples, example{strings.Replace(rejected, "CREDIT_SCORING_DENIAL", reason, 1),
			"application.rejected", `{"reject_reason":"` + reason + `"}`})
	}
	failed := seedFile(t, "nordiska/onboarding_failed.json")
	for _, code := range []string{"INTERNAL_ERROR", "ADDRESS_MISMATCH", "NAME_MISMATCH", "ID_VERIFICATION_FAILED", "TIMEOUT"} {
		examples = append(examples, example{strings.Replace(failed, "ADDRESS_MISMATCH", code, 1),
			"onboarding.failed", `{"failure_code":"` + code + `"}`})
	}

	var want []seedEvent
	for _, ex := range examples {
		ts := time.Now()
		seedAccept(t, tr, "/in/nordiska", ex.body, nordiskaHeaders(ex.body, ts, secret, token))
		data := seedData(t, nordiskaDataNames, ex.data)
		data["onboarding_id"] = onboarding
		want = append(want, seedEvent{typ: ex.typ, key: onboarding, idem: sha256IdemRE("nordiska"), raw: ex.body,
			occurred: ts.UTC().Format(time.RFC3339), data: data})
	}

	// Refused: forged signature, wrong bearer, a correctly signed request
	// 10 minutes old (replayed), a body changed under its signature.
	body := examples[0].body
	h := nordiskaHeaders(body, time.Now(), "not-the-secret", token)
	seedRefuse(t, tr, "nordiska", "/in/nordiska", body, h)
	h = nordiskaHeaders(body, time.Now(), secret, "not-the-token")
	seedRefuse(t, tr, "nordiska", "/in/nordiska", body, h)
	h = nordiskaHeaders(body, time.Now().Add(-10*time.Minute), secret, token)
	seedRefuse(t, tr, "nordiska", "/in/nordiska", body, h)
	h = nordiskaHeaders(body, time.Now(), secret, token)
	seedRefuse(t, tr, "nordiska", "/in/nordiska", strings.Replace(body, "sign.dev.nordiska.com", "sign.evil.example", 1), h)
	delete(h, "X-Card-Onboarding-Signature")
	seedRefuse(t, tr, "nordiska", "/in/nordiska", body, h)

	seedExpect(t, tr, rec, "nordiska", want)
	// One onboarding id: delivered in the order sent.
	var order []string
	for _, ev := range rec.delivered(t) {
		order = append(order, ev["raw"].(map[string]any)["eventType"].(string))
	}
	var sent []string
	for _, ex := range examples {
		sent = append(sent, seedJSON(t, ex.body).(map[string]any)["eventType"].(string))
	}
	if fmt.Sprint(order) != fmt.Sprint(sent) {
		t.Errorf("delivered in order %v, sent %v", order, sent)
	}
}

// TestSeedNordiskaSequence: with the sequence numbers the document promises,
// events posted out of order go to the broker in sequence order.
func TestSeedNordiskaSequence(t *testing.T) {
	tr, rec := seedRelay(t, mustAbs(t, "../providers.d"), nil)
	secret, token := shippedEnv["NORDISKA_SIGNING_SECRET"], shippedEnv["NORDISKA_AUTH_TOKEN"]
	const onboarding = "0f3c2b1a-aaaa-4bbb-8ccc-123456789abc"
	bodies := map[int]string{
		1: `{"eventId":"evt-1","sequence":1,"eventType":"SIGNING_SESSION_CREATED","onboardingId":"` + onboarding + `","signingUrl":"https://sign.dev.nordiska.com/?sessionId=s-1"}`,
		2: `{"eventId":"evt-2","sequence":2,"eventType":"SIGNING_SESSION_COMPLETED","onboardingId":"` + onboarding + `"}`,
		3: `{"eventId":"evt-3","sequence":3,"eventType":"ONBOARDING_COMPLETED","onboardingId":"` + onboarding + `","engagementId":"e-1"}`,
		4: `{"eventId":"evt-4","sequence":4,"eventType":"ONBOARDING_FAILED","onboardingId":"` + onboarding + `","failureCode":"TIMEOUT"}`,
	}
	types := map[int]string{1: "signing.created", 2: "application.signed", 3: "onboarding.completed", 4: "onboarding.failed"}
	datas := map[int]string{1: `{"signing_url":"https://sign.dev.nordiska.com/?sessionId=s-1"}`, 2: `{}`,
		3: `{"engagement_id":"e-1"}`, 4: `{"failure_code":"TIMEOUT"}`}
	var want []seedEvent
	stamps := map[int]string{}
	for _, seq := range []int{3, 1, 4, 2} {
		ts := time.Now()
		stamps[seq] = ts.UTC().Format(time.RFC3339)
		seedAccept(t, tr, "/in/nordiska", bodies[seq], nordiskaHeaders(bodies[seq], ts, secret, token))
	}
	for seq := 1; seq <= 4; seq++ {
		data := seedData(t, nordiskaDataNames, datas[seq])
		data["onboarding_id"] = onboarding
		want = append(want, seedEvent{typ: types[seq], key: onboarding, sequence: float64(seq), raw: bodies[seq],
			idem: regexp.MustCompile(`^nordiska:evt-` + strconv.Itoa(seq) + `$`), occurred: stamps[seq], data: data})
	}
	seedExpect(t, tr, rec, "nordiska", want)
	if got := deliveredSeqs(t, rec, onboarding); fmt.Sprint(got) != "[1 2 3 4]" {
		t.Errorf("delivered sequences %v, want [1 2 3 4]", got)
	}
}

// ---------------------------------------------------------------- Stripe, GitHub, Standard Webhooks

func TestSeedStripe(t *testing.T) {
	tr, rec := seedRelay(t, mustAbs(t, "../providers.d"), nil)
	body := `{"id":"evt_1PqRsT2eZvKYlo2C0a1b2c3d","object":"event","api_version":"2024-06-20","created":1700000000,` +
		`"type":"invoice.paid","livemode":false,"data":{"object":{"id":"in_1PqRsT2eZvKYlo2C","object":"invoice",` +
		`"customer":"cus_QH5x0a1b2c3d","amount_paid":4200,"currency":"sek"}}}`
	signed := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: []byte(body), Secret: shippedEnv["STRIPE_WEBHOOK_SECRET"]})
	h := map[string]string{"Stripe-Signature": signed.Header, "Content-Type": "application/json"}
	seedAccept(t, tr, "/in/stripe", body, h)
	seedAccept(t, tr, "/in/stripe", body, h) // a resend: same evt id, not forwarded again

	seedRefuse(t, tr, "stripe", "/in/stripe", strings.Replace(body, `"amount_paid":4200`, `"amount_paid":1`, 1), h)
	forged := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: []byte(body), Secret: "whsec_other"})
	seedRefuse(t, tr, "stripe", "/in/stripe", body, map[string]string{"Stripe-Signature": forged.Header})
	stale := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: []byte(body),
		Secret: shippedEnv["STRIPE_WEBHOOK_SECRET"], Timestamp: time.Now().Add(-10 * time.Minute)})
	seedRefuse(t, tr, "stripe", "/in/stripe", body, map[string]string{"Stripe-Signature": stale.Header})

	obj := `{"id":"in_1PqRsT2eZvKYlo2C","object":"invoice","customer":"cus_QH5x0a1b2c3d","amount_paid":4200,"currency":"sek"}`
	seedExpect(t, tr, rec, "stripe", []seedEvent{{typ: "invoice.paid", key: "cus_QH5x0a1b2c3d",
		idem: regexp.MustCompile(`^stripe:evt_1PqRsT2eZvKYlo2C0a1b2c3d$`), raw: body, occurred: "2023-11-14T22:13:20Z",
		data: seedJSON(t, `{"object_id":"in_1PqRsT2eZvKYlo2C","livemode":false,"object":`+obj+`}`).(map[string]any)}})
}

func TestSeedGitHub(t *testing.T) {
	// GitHub's documented vector for X-Hub-Signature-256.
	if got := hmacHex("It's a Secret to Everybody", "Hello, World!"); got != "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17" {
		t.Fatalf("hmacHex disagrees with GitHub's example: %s", got)
	}
	tr, rec := seedRelay(t, mustAbs(t, "../providers.d"), nil)
	body := `{"action":"opened","issue":{"number":1347,"title":"Found a bug"},` +
		`"repository":{"id":1296269,"full_name":"octocat/Hello-World"},"sender":{"login":"octocat"}}`
	const delivery = "72d3162e-cc78-11e3-81ab-4c9367dc0958"
	h := map[string]string{"X-GitHub-Event": "issues", "X-GitHub-Delivery": delivery, "Content-Type": "application/json",
		"X-Hub-Signature-256": "sha256=" + hmacHex(shippedEnv["GITHUB_WEBHOOK_SECRET"], body)}
	seedAccept(t, tr, "/in/github", body, h)

	seedRefuse(t, tr, "github", "/in/github", strings.Replace(body, "opened", "closed", 1), h)
	forged := map[string]string{"X-GitHub-Event": "issues", "X-GitHub-Delivery": delivery,
		"X-Hub-Signature-256": "sha256=" + hmacHex("not-the-secret", body)}
	seedRefuse(t, tr, "github", "/in/github", body, forged)
	seedRefuse(t, tr, "github", "/in/github", body, map[string]string{"X-GitHub-Event": "issues"})

	seedExpect(t, tr, rec, "github", []seedEvent{{typ: "issues.opened", key: "octocat/Hello-World",
		idem: sha256IdemRE("github"), raw: body,
		data: seedJSON(t, `{"action":"opened","repository":"octocat/Hello-World","sender":"octocat"}`).(map[string]any)}})
}

// standardSign signs per Standard Webhooks: base64 HMAC-SHA256, keyed with
// the base64 after whsec_, over "id.timestamp.body".
func standardSign(t *testing.T, secret, id, ts, body string) string {
	t.Helper()
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	must(t, err)
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id + "." + ts + "." + body))
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
}

func TestSeedStandardWebhooks(t *testing.T) {
	secret := shippedEnv["STANDARD_WEBHOOK_SECRET"]
	// The specification's example vector.
	if got := standardSign(t, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330",
		`{"test": 2432232314}`); got != "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=" {
		t.Fatalf("standardSign disagrees with the specification's example: %s", got)
	}
	tr, rec := seedRelay(t, mustAbs(t, "../providers.d"), nil)
	body := `{"type":"invoice.paid","timestamp":"2024-01-15T10:35:00Z","data":{"id":"inv_123","amount":100}}`
	const id = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	h := map[string]string{"webhook-id": id, "webhook-timestamp": ts, "Content-Type": "application/json",
		// a rotated-out key's signature first: any v1 entry may match
		"webhook-signature": standardSign(t, "whsec_"+base64.StdEncoding.EncodeToString([]byte("old key")), id, ts, body) +
			" " + standardSign(t, secret, id, ts, body)}
	seedAccept(t, tr, "/in/standard", body, h)

	seedRefuse(t, tr, "standard-webhooks", "/in/standard", strings.Replace(body, `"amount":100`, `"amount":1`, 1), h)
	forged := map[string]string{"webhook-id": id, "webhook-timestamp": ts,
		"webhook-signature": standardSign(t, "whsec_"+base64.StdEncoding.EncodeToString([]byte("not the key")), id, ts, body)}
	seedRefuse(t, tr, "standard-webhooks", "/in/standard", body, forged)
	old := strconv.FormatInt(time.Now().Add(-10*time.Minute).Unix(), 10)
	stale := map[string]string{"webhook-id": id, "webhook-timestamp": old, "webhook-signature": standardSign(t, secret, id, old, body)}
	seedRefuse(t, tr, "standard-webhooks", "/in/standard", body, stale)
	otherID := map[string]string{"webhook-id": "msg_other", "webhook-timestamp": ts, "webhook-signature": standardSign(t, secret, id, ts, body)}
	seedRefuse(t, tr, "standard-webhooks", "/in/standard", body, otherID)

	seedExpect(t, tr, rec, "standard-webhooks", []seedEvent{{typ: "invoice.paid", key: "inv_123",
		idem: regexp.MustCompile(`^standard-webhooks:` + id + `$`), raw: body, occurred: "2024-01-15T10:35:00Z",
		data: seedJSON(t, `{"payload":{"id":"inv_123","amount":100}}`).(map[string]any)}})
}
