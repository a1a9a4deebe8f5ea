package main

import (
	"net/http/httptest"
	"strings"
	"testing"
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
