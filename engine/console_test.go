package engine

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// The console test drives the page at /ui/ in headless Chromium against a
// relay with real traffic. Chromium is Debian's package (.ci/run installs
// it); without it the test skips, unless HOOKRELAY_REQUIRE_BROWSER=1.

const consoleSecret = "console-test-hmac-secret-0123456789abcdef"

// consoleShop is an HMAC-signed provider (as providers.d/example.yaml) with
// a sensitive field; a body without "key" is quarantined.
const consoleShop = `
paths: [/in/shop]
sensitive: [body.customer.ssn]
verify:
  - kind: hmac
    secret: env:CONSOLE_SHOP_SECRET
    algorithm: sha256
    signed: "{header.X-Timestamp}.{body}"
    signature: { header: X-Signature, encoding: hex, prefix: "sha256=" }
    timestamp: { header: X-Timestamp, format: unix, tolerance: 5m }
event:
  id: body.id ?? ""
  key: body.key
  type: body.type
  data: { amount: body.amount, customer: body.customer }
routes:
  - to: [broker]
`

// consoleLender is disabled: its secret's variable is never set.
const consoleLender = `
paths: [/in/lender]
verify:
  - kind: hmac
    secret: env:CONSOLE_LENDER_SECRET_NEVER_SET
    signed: "{body}"
    signature: { header: X-Signature, encoding: hex }
event: { key: body.key, type: body.type }
routes:
  - to: [archive]
`

// consolePoller polls a fake lender for the status of keys.
const consolePoller = `
paths: [/in/poller]
verify: none
event: { key: body.k, type: body.t }
routes: [{ to: [archive] }]
poll:
  interval: 1h
  request: { method: GET, url: "%s/status/{{ key }}" }
  response: json
  event: { type: response.body.status }
`

// consoleBrowser starts headless Chromium with the flags a closed machine
// needs, in a fresh profile; it ends with the test.
func consoleBrowser(t *testing.T, listen func(ev any)) context.Context {
	t.Helper()
	path := "/usr/bin/chromium"
	if _, err := os.Stat(path); err != nil {
		if p, err := exec.LookPath("chromium"); err == nil {
			path = p
		} else if os.Getenv("HOOKRELAY_REQUIRE_BROWSER") == "1" {
			t.Fatal("chromium is not installed and HOOKRELAY_REQUIRE_BROWSER=1")
		} else {
			t.Skip("chromium is not installed (apt-get install chromium); HOOKRELAY_REQUIRE_BROWSER=1 makes this a failure")
		}
	}
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck, chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 860))
	ctx, cancel := chromedp.NewContext(alloc, chromedp.WithListener(listen))
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// artifactsDir is where screenshots go: $HOOKRELAY_ARTIFACTS/console, or
// test-artifacts/console at the repository's root (git-ignored).
func artifactsDir(t *testing.T) string {
	dir := filepath.Join("..", "test-artifacts", "console")
	if a := os.Getenv("HOOKRELAY_ARTIFACTS"); a != "" {
		dir = filepath.Join(a, "console")
	}
	must(t, os.MkdirAll(dir, 0o755))
	return dir
}

// page is one console tab and what it is checked with.
type page struct {
	t   *testing.T
	ctx context.Context
	dir string
}

func (p *page) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		p.shot("failure")
		p.t.Fatalf("%s: %v", what, err)
	}
}

// wait waits until a JavaScript expression is true in the page.
func (p *page) wait(what, expr string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 20*time.Second)
	defer cancel()
	// The view may not be drawn yet: an expression that throws is false.
	guarded := "(() => { try { return !!(" + expr + ") } catch (e) { return false } })()"
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](guarded, chromedp.WithPollingInterval(50*time.Millisecond),
		chromedp.WithPollingTimeout(15*time.Second))); err != nil {
		p.shot("failure")
		p.t.Fatalf("waiting for %s (%s): %v", what, expr, err)
	}
}

func (p *page) text(sel string) string {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS(sel)))
	if err != nil {
		p.shot("failure")
		p.t.Fatalf("text of %s: %v", sel, err)
	}
	return s
}

func (p *page) eval(expr string) string {
	p.t.Helper()
	s, err := chromedp.Run(p.ctx, chromedp.Evaluate[string](expr))
	if err != nil {
		p.t.Fatalf("%s: %v", expr, err)
	}
	return s
}

func (p *page) shot(name string) {
	b, err := chromedp.Run(p.ctx, chromedp.FullScreenshot(100))
	if err == nil {
		err = os.WriteFile(filepath.Join(p.dir, name+".png"), b, 0o644)
	}
	if err != nil {
		p.t.Logf("screenshot %s: %v", name, err)
	}
}

// confirm checks the page's confirm dialog says want, then accepts it.
func (p *page) confirm(want string) string {
	p.t.Helper()
	p.wait("the confirm dialog", `document.querySelector("#confirm").open`)
	got := p.text("#confirm-text")
	if !strings.Contains(got, want) {
		p.t.Errorf("confirm dialog says %q, want %q", got, want)
	}
	return got
}

func (p *page) accept() {
	p.t.Helper()
	p.do("confirm", chromedp.Click(chromedp.CSS("#confirm-ok")))
	p.wait("the dialog closed", `!document.querySelector("#confirm").open`)
}

// go opens a view by its hash.
func (p *page) open(hash, ready string) {
	p.t.Helper()
	p.do("open "+hash, chromedp.Evaluate[chromedp.Void](`location.hash = `+strconv.Quote(hash)))
	p.wait(hash, ready)
}

// TestConsoleBrowser signs in to the console, watches a dead letter appear
// and retries it from the page until it is delivered, and goes through each
// view and each action against a relay with real, signed traffic; every view
// is screenshot, and the page asks nothing of anything but the admin listener.
func TestConsoleBrowser(t *testing.T) {
	t.Setenv("CONSOLE_SHOP_SECRET", consoleSecret)

	// broker fails while failing is set, answering like a real outage.
	var failing atomic.Bool
	var delivered sync.Map // event id -> true
	broker := testServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if failing.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprint(w, "down for maintenance")
			return
		}
		delivered.Store(r.Header.Get("X-Hookrelay-Event-Id"), true)
		w.WriteHeader(http.StatusOK)
	}))
	archive := newRecorder(t, nil)
	var polls atomic.Int32
	lender := testServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/status/APP-7" {
			polls.Add(1)
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"status":"application.open"}`)
	}))

	yaml := "listen: 127.0.0.1:18080\nadmin: { listen: 127.0.0.1:19090, token: " + adminToken + " }\nspool: { path: ./spool.db }\n" +
		"destinations:\n" +
		"  broker:\n    url: \"" + broker.URL + "/lender-events\"\n    retry: { max_attempts: 2, initial: 20ms, jitter: none }\n" +
		"  archive:\n    url: \"" + archive.srv.URL + "/archive\"\n"
	tr := startRelay(t, yaml, map[string]string{"shop": consoleShop, "lender": consoleLender,
		"poller": fmt.Sprintf(consolePoller, lender.URL)})

	seq := 0
	send := func(body string, sign bool) int {
		t.Helper()
		ts := strconv.FormatInt(time.Now().Unix(), 10)
		sig := hmacHex(consoleSecret, ts+"."+body)
		if !sign {
			sig = hmacHex("not-the-secret-0123456789abcdef0123", ts+"."+body)
		}
		return tr.post("/in/shop", body, map[string]string{"Content-Type": "application/json", "X-Timestamp": ts,
			"X-Signature": "sha256=" + sig}).StatusCode
	}
	order := func(key string) string {
		t.Helper()
		seq++
		body := fmt.Sprintf(`{"id":"evt-%d","key":%q,"type":"order.paid","amount":%d,"customer":{"name":"Ada","ssn":"19121212-1212"}}`, seq, key, 100+seq)
		if code := send(body, true); code != http.StatusOK {
			t.Fatalf("signed webhook %s: %d", body, code)
		}
		var l struct{ Items []struct{ ID string } }
		tr.do("GET", "/admin/events?limit=1", "", 200, &l)
		return l.Items[0].ID
	}

	// Traffic before the operator looks: delivered orders, a refused
	// signature, a quarantined body.
	for i := range 30 {
		order("order-" + strconv.Itoa(i))
	}
	if code := send(`{"id":"forged","key":"order-1","type":"order.paid"}`, false); code != http.StatusUnauthorized {
		t.Fatalf("forged webhook: %d, want 401", code)
	}
	if code := send(`{"id":"nokey","ref":"order-99","type":"order.paid","customer":{"ssn":"19121212-1212"}}`, true); code != http.StatusOK {
		t.Fatalf("quarantined webhook: %d", code)
	}

	var mu sync.Mutex
	var requests []string
	var authorized, unauthorized int
	ctx := consoleBrowser(t, func(ev any) {
		if e, ok := ev.(*network.EventRequestWillBeSent); ok {
			mu.Lock()
			requests = append(requests, e.Request.URL)
			if strings.Contains(e.Request.URL, "/admin/") || strings.HasSuffix(e.Request.URL, "/metrics") {
				if e.Request.Headers["Authorization"] == "Bearer "+adminToken {
					authorized++
				} else {
					unauthorized++
				}
			}
			mu.Unlock()
		}
	})
	p := &page{t: t, ctx: ctx, dir: artifactsDir(t)}

	// Sign in: a wrong token is refused, the right one kept in the tab.
	p.do("open the console", chromedp.Navigate(tr.Admin.URL+"/ui/"))
	p.wait("the sign-in form", `!document.querySelector("#login").hidden`)
	p.shot("01-sign-in")
	p.do("wrong token", chromedp.SendKeys(chromedp.CSS("#token"), "wrong"), chromedp.Click(chromedp.CSS("#login button")))
	p.wait("the refusal", `document.querySelector("#login-error").textContent.includes("refused")`)
	p.do("sign in", chromedp.SendKeys(chromedp.CSS("#token"), adminToken), chromedp.Click(chromedp.CSS("#login button")))
	p.wait("the destinations", `document.querySelector("#destinations tr[data-name=broker]") !== null`)
	if got := p.eval(`sessionStorage.getItem("hookrelay.token") + "|" + document.cookie`); got != adminToken+"|" {
		t.Errorf("token kept as %q, want it in sessionStorage and no cookie", got)
	}

	// A dead letter appears: broker goes down, an order fails twice.
	failing.Store(true)
	dead := order("order-42")
	held := order("order-42")
	p.wait("broker's dead letter", `document.querySelector("#destinations tr[data-name=broker] .dead").textContent === "1"`)
	p.wait("the held key", `document.querySelector("#held").textContent.includes("order-42")`)
	p.shot("02-destinations")

	// The event list, filtered to dead events, leads to it.
	p.open("#/events?status=dead", `document.querySelectorAll("#events tr[data-id]").length === 1`)
	if got := p.eval(`document.querySelector("#events tr[data-id]").dataset.id`); got != dead {
		t.Errorf("dead events list shows %s, want %s", got, dead)
	}
	p.do("open the dead event", chromedp.Click(chromedp.CSS(`#events tr[data-id] a`)))
	p.wait("its two attempts", `document.querySelectorAll(".delivery[data-status=dead] .attempts tbody tr").length === 2`)
	if s := p.text(".delivery .attempts"); !strings.Contains(s, "503") || !strings.Contains(s, "down for maintenance") {
		t.Errorf("attempts show %q, want the 503 and the response", s)
	}
	if s := p.text("#event-data"); !strings.Contains(s, `"ssn": "***"`) || strings.Contains(s, "19121212") {
		t.Errorf("event data shows %q, want the ssn masked", s)
	}
	p.shot("03-event-dead")

	// Retry it from the page once broker is back: delivered, and the held
	// order behind it too.
	failing.Store(false)
	p.do("retry", chromedp.Click(chromedp.CSS("#retry")))
	p.confirm("Retry the dead deliveries of " + dead)
	p.shot("04-confirm-retry")
	p.accept()
	p.wait("the retry's answer", `document.querySelector("#flash").textContent === "Requeued 1."`)
	p.wait("delivered", `document.querySelector("#event .status").textContent === "delivered"`)
	p.shot("05-event-delivered")
	waitFor(t, 10*time.Second, "both order-42 events at broker", func() bool {
		_, a := delivered.Load(dead)
		_, b := delivered.Load(held)
		return a && b
	})

	// Skip: another dead letter, skipped from its page.
	failing.Store(true)
	skip := order("order-43")
	waitFor(t, 10*time.Second, "order-43 dead", func() bool { return tr.dest("broker").Dead == 1 })
	failing.Store(false)
	p.open("#/event/"+skip, `!document.querySelector("#skip").disabled`)
	p.do("skip", chromedp.Click(chromedp.CSS("#skip")))
	p.confirm("Skip the dead and held deliveries of " + skip)
	p.accept()
	p.wait("skipped", `document.querySelector("#event .status").textContent === "skipped"`)
	if _, ok := delivered.Load(skip); ok {
		t.Error("a skipped event was delivered")
	}

	// Bulk retry by destination and key: the count comes before the confirm.
	failing.Store(true)
	bulk := []string{order("order-50"), order("order-51"), order("order-52")}
	waitFor(t, 10*time.Second, "three dead letters", func() bool { return tr.dest("broker").Dead == 3 })
	failing.Store(false)
	p.open("#/destinations", `document.querySelector("#destinations tr[data-name=broker] .dead").textContent === "3"`)
	p.do("bulk retry of one key", chromedp.SetValue(chromedp.CSS("#bulk-destination"), "broker"),
		chromedp.SendKeys(chromedp.CSS("#bulk-key"), "order-51"), chromedp.Click(chromedp.CSS("#bulk-retry")))
	p.confirm("Retry 1 dead delivery (destination broker, key order-51)?")
	p.accept()
	p.wait("order-51 requeued", `document.querySelector("#flash").textContent === "Requeued 1."`)
	p.do("bulk retry of the destination", chromedp.Evaluate[chromedp.Void](`document.querySelector("#bulk-key").value = ""`), chromedp.Click(chromedp.CSS("#bulk-retry")))
	p.confirm("Retry 2 dead deliveries (destination broker)?")
	p.shot("06-confirm-bulk-retry")
	p.accept()
	p.wait("no dead letter left", `document.querySelector("#destinations tr[data-name=broker] .dead").textContent === "0"`)
	waitFor(t, 10*time.Second, "the bulk-retried orders at broker", func() bool {
		for _, id := range bulk {
			if _, ok := delivered.Load(id); !ok {
				return false
			}
		}
		return true
	})

	// Pause and resume, each confirmed; a cancelled one changes nothing.
	p.do("pause, cancelled", chromedp.Click(chromedp.CSS("#destinations tr[data-name=broker] .pause")))
	p.confirm("Pause sending to broker?")
	p.do("cancel", chromedp.Click(chromedp.CSS("#confirm-cancel")))
	p.wait("cancelled", `document.querySelector("#flash").textContent === "Cancelled."`)
	if tr.dest("broker").Paused {
		t.Fatal("a cancelled pause paused")
	}
	p.do("pause", chromedp.Click(chromedp.CSS("#destinations tr[data-name=broker] .pause")))
	p.confirm("Pause sending to broker?")
	p.accept()
	p.wait("paused", `document.querySelector("#destinations tr[data-name=broker] .resume") !== null`)
	if !tr.dest("broker").Paused {
		t.Fatal("broker not paused")
	}
	p.do("resume", chromedp.Click(chromedp.CSS("#destinations tr[data-name=broker] .resume")))
	p.confirm("Resume sending to broker?")
	p.accept()
	p.wait("resumed", `document.querySelector("#destinations tr[data-name=broker] .pause") !== null`)
	if tr.dest("broker").Paused {
		t.Fatal("broker still paused")
	}

	// The event list: filters and paging (25 a page).
	p.open("#/events", `document.querySelectorAll("#events tr[data-id]").length === 25`)
	p.shot("07-events")
	p.do("older", chromedp.Click(chromedp.CSS("#older")))
	p.wait("the second page", `document.querySelector("#page").textContent === "page 2" && document.querySelectorAll("#events tr[data-id]").length === 11`)
	p.do("newer", chromedp.Click(chromedp.CSS("#newer")))
	p.wait("the first page again", `document.querySelector("#page").textContent === "page 1 (live)"`)
	p.do("filter", chromedp.SendKeys(chromedp.CSS("#f-key"), "order-42"), chromedp.SetValue(chromedp.CSS("#f-provider"), "shop"),
		chromedp.SetValue(chromedp.CSS("#f-destination"), "broker"), chromedp.SetValue(chromedp.CSS("#f-status"), "delivered"),
		chromedp.SendKeys(chromedp.CSS("#f-type"), "order.paid"), chromedp.Click(chromedp.CSS("#apply")))
	p.wait("order-42's two events", `location.hash.includes("key=order-42") && document.querySelectorAll("#events tr[data-id]").length === 2`)
	if got := p.eval(`[...document.querySelectorAll("#events tr[data-id]")].map(r => r.dataset.id).sort().join(",")`); got != strings.Join(slices.Sorted(slices.Values([]string{dead, held})), ",") {
		t.Errorf("filtered events %s, want %s and %s", got, dead, held)
	}

	// Providers: enabled, disabled and why, polling; a poll key added.
	p.open("#/providers", `document.querySelector("#providers tr[data-name=poller] .poll-add") !== null`)
	if s := p.text("#providers tr[data-name=lender] .state"); !strings.Contains(s, "disabled") || !strings.Contains(s, "CONSOLE_LENDER_SECRET_NEVER_SET") {
		t.Errorf("lender's state %q, want disabled with the reason", s)
	}
	if s := p.text("#providers tr[data-name=shop] .state"); !strings.Contains(s, "enabled") {
		t.Errorf("shop's state %q", s)
	}
	p.do("add a poll key", chromedp.SendKeys(chromedp.CSS("#providers tr[data-name=poller] .poll-key"), "APP-7"),
		chromedp.Click(chromedp.CSS("#providers tr[data-name=poller] .poll-add")))
	p.confirm("Poll key APP-7 of poller?")
	p.accept()
	p.wait("polling", `document.querySelector("#flash").textContent === "Polling APP-7 of poller."`)
	waitFor(t, 10*time.Second, "APP-7 polled", func() bool { return polls.Load() > 0 })
	p.wait("the poll key counted", `document.querySelector("#providers tr[data-name=poller] .polling").textContent.startsWith("1 keys")`)
	p.shot("08-providers")

	// Rejections: the forged request, its signature masked.
	p.open("#/rejections", `document.querySelector("#rejections tbody").textContent.includes("signature")`)
	if s := p.text("#rejections tbody"); !strings.Contains(s, "X-Signature: ***") || !strings.Contains(s, "/in/shop") {
		t.Errorf("rejections show %q, want the path and the signature masked", s)
	}
	p.shot("09-rejections")

	// Quarantine: the body without a key, reprocessed once the provider
	// takes "ref" as the key.
	p.open("#/quarantine", `document.querySelectorAll("#quarantine tr[data-id]").length === 1`)
	p.shot("10-quarantine")
	if s := p.text("#quarantine tr[data-id] .reason"); s == "" || strings.Contains(s, "19121212") {
		t.Errorf("quarantine reason %q, want one, with nothing sensitive", s)
	}
	must(t, os.WriteFile(filepath.Join(tr.dir, "providers.d", "shop.yaml"),
		[]byte(strings.Replace(consoleShop, "key: body.key", "key: body.key ?? body.ref", 1)), 0o644))
	must(t, tr.Reload())
	p.do("reprocess", chromedp.Click(chromedp.CSS("#quarantine tr[data-id] .reprocess")))
	p.confirm("Reprocess ")
	p.accept()
	p.wait("reprocessed", `document.querySelector("#flash").textContent === "Reprocessed 1." && document.querySelectorAll("#quarantine tr[data-id]").length === 0`)
	var quarantined struct{ Items []any }
	tr.do("GET", "/admin/events?key=order-99", "", 200, &quarantined)
	if len(quarantined.Items) != 1 {
		t.Errorf("reprocessed request: %d events of order-99, want 1", len(quarantined.Items))
	}
	if p.eval(`String(document.querySelector("#reprocess-all").disabled)`) != "true" {
		t.Error("reprocess all is enabled with nothing quarantined")
	}

	// Charts, drawn from /metrics: ingest and delivery rates and latency.
	for range 3 {
		order("order-chart")
	}
	p.open("#/charts", `document.querySelectorAll("#charts polyline.series").length >= 5`)
	p.wait("some readings", `Number(document.querySelector("#chart-now").textContent.match(/readings(\d+)/)[1]) >= 3`)
	for _, id := range []string{"chart-ingest", "chart-deliveries", "chart-latency"} {
		if n := p.eval(`String(document.querySelectorAll("#` + id + ` polyline.series").length)`); n == "0" {
			t.Errorf("%s has no line", id)
		}
	}
	p.shot("11-charts")
	p.open("#/destinations", `document.querySelector("#destinations tr[data-name=broker]") !== null`)
	p.shot("12-destinations-after")

	// Nothing but the admin listener was asked, and every API call carried the token.
	mu.Lock()
	defer mu.Unlock()
	for _, u := range requests {
		if !strings.HasPrefix(u, tr.Admin.URL+"/") {
			t.Errorf("the page requested %s, beyond the admin listener %s", u, tr.Admin.URL)
		}
	}
	if authorized == 0 || unauthorized > 1 { // the first, wrong token's
		t.Errorf("%d API requests with the token, %d without", authorized, unauthorized)
	}
}
