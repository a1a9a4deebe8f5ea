package engine

import (
	"testing"

	"github.com/hookrelay/hookrelay/engine/spool"
)

// TestGitHubRedeliveryUnderNewGUID replays one signed GitHub body three
// times with new X-GitHub-Delivery values (unsigned): the shipped
// github.yaml dedups on the body, so it reaches the broker once.
func TestGitHubRedeliveryUnderNewGUID(t *testing.T) {
	tr, rec := seedRelay(t, mustAbs(t, "../providers.d"), nil)
	body := `{"action":"opened","issue":{"number":1347},"repository":{"full_name":"octocat/Hello-World"},"sender":{"login":"octocat"}}`
	sig := "sha256=" + hmacHex(shippedEnv["GITHUB_WEBHOOK_SECRET"], body)
	for i, guid := range []string{
		"72d3162e-cc78-11e3-81ab-4c9367dc0958", "0b8e4a1c-0000-11e3-81ab-4c9367dc0958", "deadbeef-1111-11e3-81ab-4c9367dc0958",
	} {
		event := "issues"
		if i == 2 {
			event = "push" // retyped as well: still the same signed body
		}
		seedAccept(t, tr, "/in/github", body, map[string]string{"X-GitHub-Event": event, "X-GitHub-Delivery": guid,
			"X-Hub-Signature-256": sig, "Content-Type": "application/json"})
	}
	// Every answer above came after the dedup decision: one stored event is
	// one delivery.
	events := 0
	must(t, tr.spool.Events("", 0, func(*spool.Event, []*spool.Delivery) bool { events++; return true }))
	if events != 1 {
		t.Fatalf("%d events stored for one signed body, want 1", events)
	}
	waitFor(t, seedWait, "the delivery", func() bool { return len(rec.delivered(t)) >= 1 })
	got := rec.delivered(t)
	if len(got) != 1 {
		t.Fatalf("%d deliveries of one signed body, want 1", len(got))
	}
	if got[0]["type"] != "issues.opened" {
		t.Errorf("type %v, want issues.opened (the first delivery's)", got[0]["type"])
	}
	if n := len(rec.requests()); n != 1 {
		t.Errorf("%d requests to the broker, want 1", n)
	}
}
