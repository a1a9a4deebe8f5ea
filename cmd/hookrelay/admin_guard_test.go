package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestClientThroughBrowserGuard: the admin clients keep working against a
// real relay whose admin API refuses what a web page sends (SPEC 6): by
// address and by localhost, with a JSON body and without one.
func TestClientThroughBrowserGuard(t *testing.T) {
	sk := &sink{}
	dest := httptest.NewServer(sk)
	t.Cleanup(dest.Close)
	r := newRelay(t, dest.URL, map[string]string{"crash": providerYAML})
	must(t, r.start())
	byName := strings.Replace(r.admin, "http://127.0.0.1:", "localhost:", 1)
	for _, args := range [][]string{
		{"events", "list", "--admin", r.admin},
		{"events", "list", "--admin", byName},
		{"dead", "retry", "--admin", r.admin},
		{"dead", "retry", "--destination", "sink", "--key", "k", "--admin", byName},
		{"reload", "--admin", r.admin},
	} {
		if code, out, errOut := runBin(t, r.dir, childEnv(), args...); code != 0 {
			t.Errorf("hookrelay %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
		}
	}
}

// TestSighupKeepsProtectedAdmin: a relay whose admin API listens on every
// interface with a token gets, on SIGHUP, a relay.yaml that moves the admin
// listener to loopback and drops the token. The reload is refused (logged)
// and the running listener still wants the token.
func TestSighupKeepsProtectedAdmin(t *testing.T) {
	sk := &sink{}
	dest := httptest.NewServer(sk)
	t.Cleanup(dest.Close)
	r := newRelay(t, dest.URL, map[string]string{"crash": providerYAML})
	cfgPath := filepath.Join(r.dir, "relay.yaml")
	b, err := os.ReadFile(cfgPath)
	must(t, err)
	port := r.admin[strings.LastIndex(r.admin, ":")+1:]
	loopbackCfg := string(b)
	public := strings.Replace(loopbackCfg, `listen: "127.0.0.1:`+port+`"`, `listen: "0.0.0.0:`+port+`"`+"\n  token: guard-test-token", 1)
	must(t, os.WriteFile(cfgPath, []byte(public), 0o644))
	must(t, r.start())
	t.Cleanup(func() { _, _, _ = r.terminate(10 * time.Second) }) // a relay that does not stop is killed by stopHard

	status := func() int {
		t.Helper()
		resp, err := http.Get(r.admin + "/admin/events")
		must(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	if s := status(); s != http.StatusUnauthorized {
		t.Fatalf("GET /admin/events without the token before the reload: %d", s)
	}
	must(t, os.WriteFile(cfgPath, []byte(loopbackCfg), 0o644))
	cmd, _ := r.current()
	must(t, cmd.Process.Signal(syscall.SIGHUP))
	deadline := time.Now().Add(10 * time.Second)
	for {
		log, _ := os.ReadFile(r.log.Name())
		if strings.Contains(string(log), "reload refused") && strings.Contains(string(log), "admin.listen") {
			break
		}
		if strings.Contains(string(log), "configuration reloaded") || time.Now().After(deadline) {
			t.Fatalf("SIGHUP was not refused for the moved admin listener:\n%s", tail(log, 4<<10))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if s := status(); s != http.StatusUnauthorized {
		t.Errorf("GET /admin/events without the token after the refused reload: %d", s)
	}
}
