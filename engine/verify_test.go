package engine

// Verification through the real ingest listener: signature headers named
// with signature.format (SPEC 3, "More on verification"), Svix's header
// names, replays of JWS callbacks, and the ip verifier behind proxies.

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v82/webhook"
)

// untilDelivered waits until rec has a 2xx delivery whose envelope has the
// given idempotency id, and returns every envelope delivered by then. Events
// of one key are delivered in ingest order, so a sentinel event posted last
// on a key proves that nothing posted before it on that key is still to come.
func untilDelivered(t *testing.T, rec *recorder, idem string) []map[string]any {
	t.Helper()
	var got []map[string]any
	waitFor(t, seedWait, "delivery of "+idem, func() bool {
		got = rec.delivered(t)
		for _, ev := range got {
			if ev["idempotency_id"] == idem {
				return true
			}
		}
		return false
	})
	return got
}

// svixHeaders signs body as Svix does (svix-id, svix-timestamp,
// svix-signature), with every secret in turn: several signatures, as during
// a key rotation.
func svixHeaders(t *testing.T, id string, at time.Time, body string, secrets ...string) map[string]string {
	t.Helper()
	ts := strconv.FormatInt(at.Unix(), 10)
	var sigs []string
	for _, s := range secrets {
		sigs = append(sigs, standardSign(t, s, id, ts, body))
	}
	return map[string]string{"svix-id": id, "svix-timestamp": ts, "svix-signature": strings.Join(sigs, " "),
		"Content-Type": "application/json"}
}

func TestSignatureHeaderWithFormat(t *testing.T) {
	secret := shippedEnv["STANDARD_WEBHOOK_SECRET"]
	oldKey := "whsec_" + base64.StdEncoding.EncodeToString([]byte("the key before the rotation...."))
	forger := "whsec_" + base64.StdEncoding.EncodeToString([]byte("a key the sender never issued.."))

	// A config written from SPEC 3's field list: the header named beside the format.
	stripeNamed := strings.Replace(strings.Replace(shippedProvider(t, "stripe"),
		"signature: { format: stripe }", "signature: { header: Stripe-Signature, format: stripe }", 1),
		"name: stripe\n", "name: stripe-named\n", 1)
	stripeNamed = strings.Replace(stripeNamed, "paths: [/in/stripe]", "paths: [/in/stripe-named]", 1)
	// A standard verifier pinned to Svix's header names.
	svixOnly := strings.Replace(strings.Replace(strings.Replace(shippedProvider(t, "standard-webhooks"),
		"signature: { format: standard }", "signature: { format: standard, header: Svix-Signature }", 1),
		"name: standard-webhooks\n", "name: svix\n", 1), "paths: [/in/standard]", "paths: [/in/svix]", 1)
	dir := seedProviderCopy(t, map[string]string{
		"stripe-named": stripeNamed, "svix": svixOnly, "standard-webhooks": shippedProvider(t, "standard-webhooks"),
	})
	tr, rec := seedRelay(t, dir, nil)

	t.Run("stripe with header named", func(t *testing.T) {
		body := `{"id":"evt_named_1","object":"event","created":1700000000,"type":"invoice.paid","data":{"object":{"id":"in_1","customer":"cus_named"}}}`
		signed := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: []byte(body), Secret: shippedEnv["STRIPE_WEBHOOK_SECRET"]})
		seedAccept(t, tr, "/in/stripe-named", body, map[string]string{"Stripe-Signature": signed.Header, "Content-Type": "application/json"})
		forged := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: []byte(body), Secret: "whsec_other"})
		seedRefuse(t, tr, "stripe-named", "/in/stripe-named", body, map[string]string{"Stripe-Signature": forged.Header})
		untilDelivered(t, rec, "stripe-named:evt_named_1")
	})

	t.Run("svix headers, shipped file", func(t *testing.T) {
		const id = "msg_svix_rotation_1"
		body := `{"type":"invoice.paid","timestamp":"2024-01-15T10:35:00Z","data":{"id":"inv_svix","amount":100}}`
		// During a rotation Svix sends a signature per key: the old one first.
		h := svixHeaders(t, id, time.Now(), body, oldKey, secret)
		seedAccept(t, tr, "/in/standard", body, h)
		seedAccept(t, tr, "/in/standard", body, h) // Svix's retry: same svix-id, a duplicate

		seedRefuse(t, tr, "standard-webhooks", "/in/standard", strings.Replace(body, `"amount":100`, `"amount":1`, 1), h)
		seedRefuse(t, tr, "standard-webhooks", "/in/standard", body, svixHeaders(t, id, time.Now(), body, forger))
		seedRefuse(t, tr, "standard-webhooks", "/in/standard", body, svixHeaders(t, id, time.Now().Add(-10*time.Minute), body, secret))
		// A webhook-* header present selects that family whole: svix-* values are not mixed in.
		mixed := svixHeaders(t, id, time.Now(), body, secret)
		mixed["webhook-id"] = id
		seedRefuse(t, tr, "standard-webhooks", "/in/standard", body, mixed)

		// The sentinel, last on the key inv_svix: when it is delivered, so is
		// everything accepted before it.
		sentinel := `{"type":"invoice.voided","data":{"id":"inv_svix"}}`
		seedAccept(t, tr, "/in/standard", sentinel, svixHeaders(t, "msg_svix_sentinel", time.Now(), sentinel, secret))
		n := 0
		for _, ev := range untilDelivered(t, rec, "standard-webhooks:msg_svix_sentinel") {
			if ev["idempotency_id"] == "standard-webhooks:"+id {
				n++
				if ev["key"] != "inv_svix" || ev["type"] != "invoice.paid" {
					t.Errorf("svix event delivered as %v %v", ev["type"], ev["key"])
				}
			}
		}
		if n != 1 {
			t.Errorf("svix-signed event delivered %d times, want 1", n)
		}
	})

	t.Run("header pinned to svix", func(t *testing.T) {
		body := `{"type":"invoice.paid","data":{"id":"inv_pinned"}}`
		seedAccept(t, tr, "/in/svix", body, svixHeaders(t, "msg_pinned", time.Now(), body, secret))
		ts := strconv.FormatInt(time.Now().Unix(), 10)
		seedRefuse(t, tr, "svix", "/in/svix", body, map[string]string{"webhook-id": "msg_pinned_2", "webhook-timestamp": ts,
			"webhook-signature": standardSign(t, secret, "msg_pinned_2", ts, body)})
		untilDelivered(t, rec, "svix:msg_pinned")
	})
}

// ipProvider accepts requests whose client, read from X-Forwarded-For
// behind HOPS proxies of ours, is in 203.0.113.0/24.
const ipProvider = `
paths: [/in/PATH]
verify:
  - kind: ip
    allow: [203.0.113.0/24]
    trust_forwarded: true
    HOPS
event:
  id: body.id
  key: body.key
  type: body.type
routes:
  - to: [dest]
`

// TestIPTrustedHops: behind proxies that append to X-Forwarded-For, the
// client is counted from the right; an allowed address the client wrote
// into the header itself (the left-most entry) does not pass.
func TestIPTrustedHops(t *testing.T) {
	rec := newRecorder(t, nil)
	tr := startRelay(t, relayYAML(rec.srv.URL, ""), map[string]string{
		"one": strings.NewReplacer("PATH", "one", "HOPS", "").Replace(ipProvider),
		"two": strings.NewReplacer("PATH", "two", "HOPS", "trusted_hops: 2").Replace(ipProvider),
	})
	post := func(path, id, xff string) int {
		t.Helper()
		body := fmt.Sprintf(`{"id":%q,"key":"k","type":"t"}`, id)
		status, resp := seedPost(t, tr, path, body, map[string]string{"X-Forwarded-For": xff, "Content-Type": "application/json"})
		if status == http.StatusUnauthorized {
			var e struct{ Error string }
			if json.Unmarshal([]byte(resp), &e) != nil || e.Error == "" {
				t.Errorf("POST %s: 401 without a reason: %s", path, resp)
			}
		}
		return status
	}
	for _, c := range []struct {
		path, id, xff string
		want          int
	}{
		// One proxy: it appended the client's address last.
		{"/in/one", "spoofed", "203.0.113.5, 198.51.100.1", http.StatusUnauthorized},
		{"/in/one", "client", "198.51.100.1, 203.0.113.5", http.StatusOK},
		{"/in/one", "direct", "203.0.113.7", http.StatusOK},
		{"/in/one", "none", "", http.StatusUnauthorized},
		// Two proxies (a CDN, then a load balancer): the client is second from the right.
		{"/in/two", "spoofed", "203.0.113.5, 198.51.100.1, 10.0.0.9", http.StatusUnauthorized},
		{"/in/two", "client", "198.51.100.1, 203.0.113.5, 10.0.0.9", http.StatusOK},
		{"/in/two", "short", "203.0.113.5", http.StatusUnauthorized},
	} {
		if got := post(c.path, c.path+"-"+c.id, c.xff); got != c.want {
			t.Errorf("POST %s with X-Forwarded-For %q: %d, want %d", c.path, c.xff, got, c.want)
		}
	}
	untilDelivered(t, rec, "two:/in/two-client")
	untilDelivered(t, rec, "one:/in/one-direct")
	for _, ev := range rec.delivered(t) {
		if id, _ := ev["idempotency_id"].(string); strings.Contains(id, "spoofed") || strings.Contains(id, "short") {
			t.Errorf("delivered %s", id)
		}
	}
}

// TestJWSAlteredCopiesAreDuplicates: a signed Resurs callback replayed
// re-spaced, re-ordered and with a \u0053 escape (all of which still match
// the signed payload as JSON) is a duplicate of the first: answered with
// success and not forwarded again, so it cannot undo a later decision.
func TestJWSAlteredCopiesAreDuplicates(t *testing.T) {
	const kid = "1cb06a4a-3465-4f11-ac3d-d8bb2bdb1eb7"
	key := newResursKey(t, kid)
	keys := newJWKSServer(t, key)
	tr, rec := seedRelay(t, mustAbs(t, "../providers.d"), map[string]string{
		"RESURS_JWKS_URL": keys.url, "RESURS_JWKS_APIKEY": resursAPIKey,
	})
	approved, _ := resursCallback(t, seedFile(t, "resurs/credit_decision_approved.json"), key, kid)

	var top map[string]json.RawMessage
	must(t, json.Unmarshal([]byte(approved), &top))
	var event map[string]json.RawMessage // re-encoded with its keys sorted: another order
	must(t, json.Unmarshal(top["externalApplicationEvent"], &event))
	reorderedEvent, err := json.Marshal(event)
	must(t, err)
	var compact bytes.Buffer
	must(t, json.Compact(&compact, []byte(approved)))
	copies := map[string]string{
		"re-spaced":  compact.String(),
		"re-ordered": `{"jwsData":` + string(top["jwsData"]) + `,"externalApplicationEvent":` + string(reorderedEvent) + `}`,
		"escaped":    strings.Replace(approved, `"CREDIT_DECISION_UPDATED"`, `"CREDIT_DECI\u0053ION_UPDATED"`, 1),
	}
	seedAccept(t, tr, "/in/resurs", approved, resursHeaders)
	for name, body := range copies {
		if body == approved {
			t.Fatalf("%s copy is the original", name)
		}
		seedAccept(t, tr, "/in/resurs", body, resursHeaders)
	}
	// The lender's next decision on the key, posted last: when it is
	// delivered, every event accepted before it on the key has been too.
	rejected, _ := resursCallback(t, seedFile(t, "resurs/credit_decision_rejected.json"), key, kid)
	seedAccept(t, tr, "/in/resurs", rejected, resursHeaders)
	var got []map[string]any
	waitFor(t, seedWait, "the rejection's delivery", func() bool {
		got = rec.delivered(t)
		return len(got) > 0 && got[len(got)-1]["type"] == "application.rejected"
	})
	var types []any
	for _, ev := range got {
		types = append(types, ev["type"])
		if id, _ := ev["idempotency_id"].(string); !sha256IdemRE("resurs").MatchString(id) {
			t.Errorf("idempotency_id %q, want resurs:<sha256>", id)
		}
	}
	if len(got) != 2 || types[0] != "application.approved" {
		t.Errorf("delivered %v, want [application.approved application.rejected]: the copies were forwarded again", types)
	}
}

// TestJWSMaxAgeThroughListener: resurs.yaml with max_age refuses a
// callback whose signed iat is older, and takes a fresh one.
func TestJWSMaxAgeThroughListener(t *testing.T) {
	const kid = "1cb06a4a-3465-4f11-ac3d-d8bb2bdb1eb7"
	key := newResursKey(t, kid)
	keys := newJWKSServer(t, key)
	yaml := shippedProvider(t, "resurs")
	const anchor = "    payload: must-match\n"
	if !strings.Contains(yaml, anchor) {
		t.Fatal("resurs.yaml has no payload: must-match line")
	}
	dir := seedProviderCopy(t, map[string]string{"resurs": strings.Replace(yaml, anchor, anchor+"    max_age: 10m\n", 1)})
	tr, rec := seedRelay(t, dir, map[string]string{"RESURS_JWKS_URL": keys.url, "RESURS_JWKS_APIKEY": resursAPIKey})
	doc := seedFile(t, "resurs/paid_out.json")
	withIat := func(at time.Time) string {
		body, _ := resursCallback(t, strings.Replace(doc, "{", fmt.Sprintf(`{"iat": %d, `, at.Unix()), 1), key, kid)
		return body
	}
	old := withIat(time.Now().Add(-time.Hour))
	seedRefuse(t, tr, "resurs", "/in/resurs", old, resursHeaders)
	if rj := tr.rejections.List("resurs", 1); len(rj) != 1 || !strings.Contains(rj[0].Reason, "max_age") {
		t.Errorf("rejection %+v, want a max_age reason", rj)
	}
	seedAccept(t, tr, "/in/resurs", withIat(time.Now().Add(-time.Minute)), resursHeaders)
	noIat, _ := resursCallback(t, seedFile(t, "resurs/signed.json"), key, kid)
	seedAccept(t, tr, "/in/resurs", noIat, resursHeaders)
	waitFor(t, seedWait, "two deliveries", func() bool { return len(rec.delivered(t)) == 2 })
}
