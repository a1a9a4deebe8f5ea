package engine

import (
	"encoding/base64"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v82/webhook"
)

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
