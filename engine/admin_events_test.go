package engine

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
)

// TestAdminEvents: filters, newest-first cursor pagination and the errors
// of GET /admin/events.
func TestAdminEvents(t *testing.T) {
	s := newSink(t, nil)
	provider := strings.Replace(plainProvider, "  - to: [dest]\n",
		"  - to: [dest]\n  - when: body.type == \"loan.created\"\n    to: [audit]\n", 1)
	other := strings.Replace(plainProvider, "/in/plain", "/in/other", 1)
	tr := startRelay(t, adminRelayYAML(s.srv.URL, "  audit:\n    url: \""+s.srv.URL+"/audit\"\n"),
		map[string]string{"plain": provider, "other": other})
	tr.do("POST", "/admin/destinations/audit/pause", "", 200, nil) // created events stay pending

	for n := 0; n < 3; n++ {
		must(t, tr.ingestAt("/in/other", eventBody("o", n)))
	}
	for n := 0; n < 25; n++ {
		typ := "loan.updated"
		if n%3 == 0 {
			typ = "loan.created"
		}
		body := fmt.Sprintf(`{"id":"p-%d","key":"k%d","type":%q,"n":%d}`, n, n%5, typ, n)
		must(t, tr.ingest(body))
	}
	waitFor(t, 5*time.Second, "28 deliveries to dest", func() bool { return len(okHits(t, s)) == 28 })
	waitFor(t, 5*time.Second, "19 delivered events", func() bool {
		return len(tr.events("status=delivered&limit=100").Items) == 19
	})

	count := func(pred func(n int) bool) int {
		c := 0
		for n := 0; n < 25; n++ {
			if pred(n) {
				c++
			}
		}
		return c
	}
	created := count(func(n int) bool { return n%3 == 0 })
	for _, tc := range []struct {
		query string
		want  int
		check func(adminEvent) bool
	}{
		{"provider=other", 3, func(e adminEvent) bool { return e.Provider == "other" }},
		{"provider=plain", 25, func(e adminEvent) bool { return e.Provider == "plain" }},
		{"type=loan.created", created, func(e adminEvent) bool { return e.Type == "loan.created" }},
		{"key=k0", 5, func(e adminEvent) bool { return e.Key == "k0" }},
		{"destination=audit", created, func(e adminEvent) bool { return e.Type == "loan.created" }},
		{"destination=dest", 28, nil},
		{"status=pending", created, func(e adminEvent) bool { return e.Status == "pending" && e.Type == "loan.created" }},
		{"status=delivered", 28 - created, func(e adminEvent) bool { return e.Status == "delivered" }},
		{"status=dead", 0, nil},
		{"status=held", 0, nil},
		{"status=skipped", 0, nil},
		{"status=quarantined", 0, nil},
		{"provider=plain&type=loan.created&key=k0", count(func(n int) bool { return n%3 == 0 && n%5 == 0 }), nil},
		{"provider=nobody", 0, nil},
	} {
		t.Run(tc.query, func(t *testing.T) {
			var raw map[string]json.RawMessage
			tr.get("/admin/events?limit=1000&"+tc.query, &raw)
			if string(raw["items"]) == "null" {
				t.Errorf("items is null, want a list")
			}
			p := tr.events("limit=1000&" + tc.query)
			if len(p.Items) != tc.want || p.NextCursor != "" {
				t.Errorf("%d items, cursor %q; want %d and no cursor", len(p.Items), p.NextCursor, tc.want)
			}
			for _, e := range p.Items {
				if tc.check != nil && !tc.check(e) {
					t.Errorf("item %+v does not match", e)
				}
			}
		})
	}

	for _, tc := range []struct {
		query string
		pages []int
	}{
		{"provider=plain&limit=10", []int{10, 10, 5}},
		{"limit=10", []int{10, 10, 8}},
		{"type=loan.created&limit=4", []int{4, 4, 1}},
	} {
		t.Run("pages "+tc.query, func(t *testing.T) {
			var ids []string
			var sizes []int
			cursor := ""
			for page := 0; ; page++ {
				if page > 5 {
					t.Fatalf("more than 5 pages")
				}
				p := tr.events(tc.query + "&cursor=" + cursor)
				sizes = append(sizes, len(p.Items))
				ids = append(ids, idsOf(p.Items)...)
				if p.NextCursor == "" {
					break
				}
				cursor = p.NextCursor
			}
			if !slices.Equal(sizes, tc.pages) {
				t.Errorf("pages of %v, want %v", sizes, tc.pages)
			}
			if !slices.IsSortedFunc(ids, func(a, b string) int { return strings.Compare(b, a) }) {
				t.Errorf("not newest first: %v", ids)
			}
			if len(slices.Compact(slices.Clone(ids))) != len(ids) {
				t.Errorf("duplicates across pages: %v", ids)
			}
		})
	}
	// Newest first is ingest order reversed.
	p := tr.events("provider=plain&limit=25")
	for i, e := range p.Items {
		if e.n() != 24-i {
			t.Errorf("item %d is n=%d, want %d", i, e.n(), 24-i)
		}
	}

	for _, q := range []string{"limit=0", "limit=-1", "limit=ten", "status=bogus", "status=Dead", "cursor=not-an-id"} {
		status, body := tr.call("GET", "/admin/events?"+q, "")
		var e struct{ Error string }
		if status != 400 || json.Unmarshal(body, &e) != nil || e.Error == "" {
			t.Errorf("%s: %d %s, want 400 with an error", q, status, body)
		}
	}
	for _, id := range []string{ulid.Make().String(), "nope"} {
		for _, req := range [][2]string{{"GET", "/admin/events/" + id}, {"POST", "/admin/events/" + id + "/retry"},
			{"POST", "/admin/events/" + id + "/skip"}} {
			status, body := tr.call(req[0], req[1], "")
			var e struct{ Error string }
			if status != 404 || json.Unmarshal(body, &e) != nil || e.Error == "" {
				t.Errorf("%s %s: %d %s, want 404 with an error", req[0], req[1], status, body)
			}
		}
	}
}

// TestAdminQuarantine: requests our mapping cannot read are listed, and
// reprocessed once the provider file is fixed and reloaded.
func TestAdminQuarantine(t *testing.T) {
	s := newSink(t, nil)
	tr := startRelay(t, adminRelayYAML(s.srv.URL, ""), map[string]string{"plain": plainProvider})
	bodies := []string{ // no key: the mapping fails
		`{"id":"q1","ref":"R1","type":"loan.updated","n":1}`,
		`{"id":"q2","ref":"R2","type":"loan.updated","n":2}`,
		`{"id":"q3","type":"loan.updated","n":3}`,
	}
	for _, b := range bodies {
		resp := tr.post("/in/plain", b, map[string]string{"Authorization": "Bearer t0ken", "X-Trace": "trace-1"})
		if resp.StatusCode != 200 {
			t.Fatalf("quarantined request answered %d, want the provider's success", resp.StatusCode)
		}
	}
	type qitem struct {
		ID, Provider, Reason, Status, Method, Path string
		Headers                                    map[string]string
		BodySHA256                                 string `json:"body_sha256"`
	}
	var ql struct {
		Items      []qitem
		NextCursor string `json:"next_cursor"`
	}
	raw := tr.get("/admin/quarantine", &ql)
	if strings.Contains(string(raw), "t0ken") {
		t.Errorf("the quarantine listing shows the bearer token: %s", raw)
	}
	if len(ql.Items) != 3 {
		t.Fatalf("%d quarantined, want 3: %s", len(ql.Items), raw)
	}
	for i, q := range ql.Items { // newest first
		sum := sha256.Sum256([]byte(bodies[2-i]))
		if q.Provider != "plain" || !strings.Contains(q.Reason, "event.key") || q.Path != "/in/plain" || q.Method != "POST" ||
			q.Headers["Authorization"] != "***" || q.Headers["X-Trace"] != "trace-1" || q.BodySHA256 != hex.EncodeToString(sum[:]) ||
			q.Status != "quarantined" {
			t.Errorf("quarantined %d: %+v", i, q)
		}
	}
	var ev struct{ Items []qitem }
	tr.get("/admin/events?status=quarantined", &ev)
	if len(ev.Items) != 3 || ev.Items[0].ID != ql.Items[0].ID {
		t.Errorf("status=quarantined lists %+v", ev.Items)
	}
	var page struct {
		Items      []qitem
		NextCursor string `json:"next_cursor"`
	}
	tr.get("/admin/quarantine?limit=2", &page)
	if len(page.Items) != 2 || page.NextCursor == "" {
		t.Errorf("limit=2: %d items, cursor %q", len(page.Items), page.NextCursor)
	}
	tr.get("/admin/quarantine?limit=2&cursor="+page.NextCursor, &page)
	if len(page.Items) != 1 || page.Items[0].ID != ql.Items[2].ID || page.NextCursor != "" {
		t.Errorf("second page %+v", page)
	}

	type result struct {
		Reprocessed int
		Failed      []struct{ ID, Reason string }
	}
	reprocess := func(want int, failed ...string) {
		t.Helper()
		var res result
		tr.do("POST", "/admin/quarantine/reprocess", "", 200, &res)
		var ids []string
		for _, f := range res.Failed {
			if f.Reason == "" {
				t.Errorf("failure %s without a reason", f.ID)
			}
			ids = append(ids, f.ID)
		}
		slices.Sort(ids)
		slices.Sort(failed)
		if res.Reprocessed != want || !slices.Equal(ids, failed) {
			t.Errorf("reprocess: %+v, want %d reprocessed and %v failed", res, want, failed)
		}
	}
	// Nothing changed yet: all three still fail and stay.
	reprocess(0, ql.Items[0].ID, ql.Items[1].ID, ql.Items[2].ID)

	tr.writeProvider("plain", strings.Replace(plainProvider, "key: body.key", "key: body.ref", 1))
	tr.do("POST", "/admin/reload", "", 200, nil)
	reprocess(2, ql.Items[0].ID) // q3 has no ref either
	waitFor(t, 5*time.Second, "R1 and R2 delivered", func() bool { return len(okHits(t, s)) == 2 })
	var left struct{ Items []qitem }
	tr.get("/admin/quarantine", &left)
	if len(left.Items) != 1 || left.Items[0].ID != ql.Items[0].ID {
		t.Errorf("quarantine after reprocessing %+v, want q3 only", left.Items)
	}

	tr.writeProvider("plain", strings.Replace(plainProvider, "key: body.key", `key: body.ref ?? "none"`, 1))
	tr.do("POST", "/admin/reload", "", 200, nil)
	reprocess(1)
	waitFor(t, 5*time.Second, "q3 delivered", func() bool { return len(okHits(t, s)) == 3 })
	keys := map[string]bool{}
	for _, h := range okHits(t, s) {
		keys[h.key] = true
	}
	if !keys["R1"] || !keys["R2"] || !keys["none"] {
		t.Errorf("delivered keys %v", keys)
	}
	tr.get("/admin/quarantine", &left)
	if len(left.Items) != 0 {
		t.Errorf("quarantine not empty: %+v", left.Items)
	}
	if n := len(tr.events("status=quarantined").Items); n != 0 {
		t.Errorf("%d quarantined events left", n)
	}
	reprocess(0)
}

// TestAdminRejections: refused requests are listed with their reason,
// credentials masked and the body as a hash.
func TestAdminRejections(t *testing.T) {
	rec := newRecorder(t, nil)
	other := strings.Replace(plainProvider, "/in/plain", "/in/other", 1)
	tr := startRelay(t, adminRelayYAML(rec.srv.URL, ""), map[string]string{"plain": plainProvider, "other": other})
	bodies := []string{`{"id":"r1","key":"k"}`, `{"id":"r2","key":"k"}`, `{"id":"r3","key":"k"}`}
	for i, b := range bodies {
		h := map[string]string{"Authorization": "Bearer n0tit", "X-Trace": strconv.Itoa(i)}
		if i == 2 {
			h = map[string]string{"X-Trace": "2"}
		}
		if resp := tr.post("/in/plain", b, h); resp.StatusCode != 401 {
			t.Fatalf("refused request answered %d", resp.StatusCode)
		}
	}
	tr.post("/in/other", `{}`, nil)
	tr.post("/in/plain", eventBody("k", 1), authPlain) // accepted: not listed

	type rj struct {
		At         time.Time
		Provider   string
		Path       string
		Reason     string
		Headers    map[string]string
		BodySHA256 string `json:"body_sha256"`
	}
	var l struct{ Items []rj }
	raw := tr.get("/admin/rejections?provider=plain", &l)
	if strings.Contains(string(raw), "n0tit") {
		t.Errorf("rejections show the presented token: %s", raw)
	}
	if len(l.Items) != 3 {
		t.Fatalf("%d rejections of plain, want 3: %s", len(l.Items), raw)
	}
	for i, r := range l.Items { // newest first
		j := 2 - i
		sum := sha256.Sum256([]byte(bodies[j]))
		if r.Provider != "plain" || r.Path != "/in/plain" || r.Reason == "" || r.At.IsZero() ||
			r.BodySHA256 != hex.EncodeToString(sum[:]) || r.Headers["X-Trace"] != strconv.Itoa(j) {
			t.Errorf("rejection %d: %+v", i, r)
		}
		if auth, ok := r.Headers["Authorization"]; (j < 2 && auth != "***") || (j == 2 && ok) {
			t.Errorf("rejection %d: Authorization %q", i, auth)
		}
	}
	tr.get("/admin/rejections?provider=plain&limit=2", &l)
	if len(l.Items) != 2 || l.Items[0].Headers["X-Trace"] != "2" || l.Items[1].Headers["X-Trace"] != "1" {
		t.Errorf("limit=2: %+v", l.Items)
	}
	tr.get("/admin/rejections", &l)
	if len(l.Items) != 4 || l.Items[0].Provider != "other" {
		t.Errorf("all rejections: %+v", l.Items)
	}
	tr.get("/admin/rejections?provider=nobody", &l)
	if len(l.Items) != 0 {
		t.Errorf("provider=nobody: %+v", l.Items)
	}
	tr.do("GET", "/admin/rejections?limit=0", "", 400, nil)
}
