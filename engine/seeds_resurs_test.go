package engine

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
)

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
