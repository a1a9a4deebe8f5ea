package provider

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/transforms"
)

// TestBuildPolled: a polled answer goes through the webhook's tail (routes,
// envelope) and comes back as a Result: accepted with the event, 413 for an
// envelope over max_body, quarantined for what cannot be mapped or routed,
// and a route's error names no value of the answer (the webhook path
// always stripped them; the poller's own copy did not).
func TestBuildPolled(t *testing.T) {
	mapping, err := transforms.CompileMapping(transforms.EventSpec{Key: "key", Type: "response.body.status"})
	if err != nil {
		t.Fatal(err)
	}
	when, err := transforms.CompileBool(`int(response.body.status) > 0`)
	if err != nil {
		t.Fatal(err)
	}
	p := &Pipeline{Name: "lender", RespondStatus: http.StatusOK, Routes: []Route{{To: []string{"a"}}}}
	answer := func(status string) *transforms.Response {
		body := map[string]any{"status": status}
		return &transforms.Response{Status: 200, Body: body, JSON: body}
	}
	at := time.Unix(1700000000, 0)

	res, sum := p.BuildPolled(mapping, 1<<20, "k1", answer("SIGNED"), []byte(`{"status":"SIGNED"}`), at)
	if res.Outcome != Accepted || res.Event == nil || sum == "" || res.Event.Type != "SIGNED" ||
		res.Event.Key != "k1" || len(res.Event.Destinations) != 1 {
		t.Fatalf("accepted: %+v %q", res, sum)
	}

	res, _ = p.BuildPolled(mapping, 10, "k1", answer("SIGNED"), []byte(`{"status":"SIGNED"}`), at)
	if res.Outcome != Rejected || res.Status != http.StatusRequestEntityTooLarge || !errors.Is(res.Err, ErrPolledTooLarge) {
		t.Fatalf("too large: %+v", res)
	}

	res, _ = p.BuildPolled(mapping, 1<<20, "k1", answer(""), []byte(`{"status":""}`), at)
	if res.Outcome != Quarantined || res.Event != nil {
		t.Fatalf("empty type: %+v", res)
	}

	p.Routes = []Route{{When: when, To: []string{"a"}}}
	const secret = "personnummer-191212121212"
	res, _ = p.BuildPolled(mapping, 1<<20, "k1", answer(secret), []byte(`{"status":"`+secret+`"}`), at)
	if res.Outcome != Quarantined || res.Err == nil || strings.Contains(res.Reason(), secret) {
		t.Fatalf("route error: %+v (%s)", res, res.Reason())
	}
}
