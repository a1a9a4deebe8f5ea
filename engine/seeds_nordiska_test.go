package engine

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

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
