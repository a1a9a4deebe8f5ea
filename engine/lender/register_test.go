package lender

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/engine/config"
)

// lenderCall is one request the fake lender got.
type lenderCall struct{ path string }

// fakeLender answers registration requests with respond's status and body;
// n counts the requests from 1.
type fakeLender struct {
	*httptest.Server
	mu    sync.Mutex
	calls []lenderCall
}

func newFakeLender(t *testing.T, respond func(n int, c lenderCall) (int, string)) *fakeLender {
	f := &fakeLender{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		c := lenderCall{r.URL.RequestURI()}
		f.mu.Lock()
		f.calls = append(f.calls, c)
		n := len(f.calls)
		f.mu.Unlock()
		status, body := respond(n, c)
		w.WriteHeader(status)
		io.WriteString(w, body)
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeLender) got() []lenderCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]lenderCall(nil), f.calls...)
}

// registrant is provider plain as the engine gives it to the Registrar:
// its compiled register block, its errors named by verb and provider.
type registrant struct{ reg *Registration }

func (r registrant) Registration() *Registration { return r.reg }

func (r registrant) RegisterFrom(ctx context.Context, unregister bool, from int) (int, error) {
	done, err := r.reg.Run(ctx, "plain", unregister, from)
	if err != nil {
		return done, fmt.Errorf("register plain: %w", err)
	}
	return done, nil
}

// startRegistrar compiles the register block of provider file body (as
// plain.yaml) and registers it automatically, with the backoff shortened to
// initial and longest; it stops with the test.
func startRegistrar(t *testing.T, body string, initial, longest time.Duration) *Registrar {
	t.Helper()
	file := filepath.Join(t.TempDir(), "plain.yaml")
	if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	pf, err := config.ReadProvider(file)
	if err != nil {
		t.Fatal(err)
	}
	errs := &config.Errors{}
	reg := CompileRegister("plain", pf.Doc, pf.Resolved.Register, pf.WrittenString("register", "public_url"), "", errs)
	if !errs.Empty() {
		t.Fatal(errs)
	}
	s := &Registrar{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Lookup: func(string) Registrant { return registrant{reg} },
		retryInitial: initial, retryMax: longest}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	s.Start(ctx, &wg, []string{"plain"})
	t.Cleanup(func() { cancel(); wg.Wait() })
	return s
}

// Automatic registration retries with backoff: two 500s, then the lender
// accepts; the status goes pending -> failing -> ok.
func TestRegisterAuto(t *testing.T) {
	const token = "kompar-api-token-77"
	first, third := make(chan struct{}), make(chan struct{})
	arrived := make(chan int, 10)
	lender := newFakeLender(t, func(n int, _ lenderCall) (int, string) {
		arrived <- n
		switch n {
		case 1:
			<-first
			return 500, ""
		case 2:
			return 500, "try later"
		case 3:
			<-third
		}
		return 200, `{"success": true}`
	})
	t.Setenv("LENDER_URL", lender.URL)
	t.Setenv("RELAY_PUBLIC_URL", "https://relay.example")
	t.Setenv("KOMPAR_API_TOKEN", token)
	s := startRegistrar(t, `
register:
  auto: true
  public_url: env:RELAY_PUBLIC_URL
  values: { url: env:LENDER_URL, token: env:KOMPAR_API_TOKEN }
  request:
    url: "{{ values.url }}/hooks"
    headers: { Authorization: "token {{ values.token }}" }
    body: '{"url": "{{ public_url }}/in/plain"}'
  success: response.json?.success == true
`, 5*time.Millisecond, 20*time.Millisecond)
	status := func() string { return s.Status()["plain"] }
	waitFor := func(n int) {
		t.Helper()
		select {
		case got := <-arrived:
			if got != n {
				t.Fatalf("request %d arrived, want %d", got, n)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("request %d never arrived", n)
		}
	}
	waitFor(1)
	if got := status(); got != "pending" {
		t.Errorf("during the first attempt: %q, want pending", got)
	}
	close(first)
	waitFor(2)
	waitFor(3)
	got := status()
	if !strings.HasPrefix(got, "failing: register plain: POST <values.url>/hooks: status 500, success is false") {
		t.Errorf("after two 500s: %q", got)
	}
	if strings.Contains(got, token) {
		t.Errorf("status shows the secret: %s", got)
	}
	close(third)
	deadline := time.Now().Add(10 * time.Second)
	for status() != "ok" {
		if time.Now().After(deadline) {
			t.Fatalf("status %q, want ok", status())
		}
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case n := <-arrived:
		t.Errorf("request %d after success", n)
	case <-time.After(50 * time.Millisecond):
	}
	// A copy: changing it does not change the registrar's.
	s.Status()["plain"] = "changed"
	if status() != "ok" {
		t.Error("Status returned the registrar's own map")
	}
}

// With several requests, a retry resumes at the one that failed.
func TestRegisterAutoResumes(t *testing.T) {
	lender := newFakeLender(t, func(n int, c lenderCall) (int, string) {
		if c.path == "/b" && n == 2 {
			return 503, ""
		}
		return 200, ""
	})
	t.Setenv("LENDER_URL", lender.URL)
	s := startRegistrar(t, `
register:
  auto: true
  public_url: https://relay.example
  values: { url: env:LENDER_URL }
  requests:
    - url: "{{ values.url }}/a"
    - url: "{{ values.url }}/b"
`, time.Millisecond, defaultRegisterRetryMax)
	deadline := time.Now().Add(10 * time.Second)
	for s.Status()["plain"] != "ok" {
		if time.Now().After(deadline) {
			t.Fatalf("status %q", s.Status()["plain"])
		}
		time.Sleep(2 * time.Millisecond)
	}
	var paths []string
	for _, c := range lender.got() {
		paths = append(paths, c.path)
	}
	if strings.Join(paths, " ") != "/a /b /b" {
		t.Errorf("requests %v, want /a /b /b", paths)
	}
}
