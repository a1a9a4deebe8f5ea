package ingest

import (
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/engine/provider"
	"github.com/hookrelay/hookrelay/verifiers"
)

// TestRejectionsRing: the log keeps the last size rejections, lists them
// newest first (by provider when asked, up to a limit), masks credential
// headers, and a purge drops those received before its cutoff.
func TestRejectionsRing(t *testing.T) {
	l := NewRejections(3)
	a := &provider.Provider{Pipeline: provider.Pipeline{Name: "a"}}
	b := &provider.Provider{Pipeline: provider.Pipeline{Name: "b"}}
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for i, p := range []*provider.Provider{a, b, a, b} {
		l.add(p, &verifiers.Request{Path: "/in", Received: start.Add(time.Duration(i) * time.Second),
			Header: http.Header{"Authorization": {"Bearer s3cret"}, "X-N": {string(rune('0' + i))}}, Body: []byte("x")}, "bad")
	}
	all := l.List("", 10)
	var ns []string
	for _, rj := range all {
		ns = append(ns, rj.Headers["X-N"])
	}
	if !reflect.DeepEqual(ns, []string{"3", "2", "1"}) {
		t.Errorf("listed %v, want the last three, newest first", ns)
	}
	if all[0].Headers["Authorization"] == "Bearer s3cret" {
		t.Error("the credential header is kept in clear")
	}
	if got := l.List("a", 10); len(got) != 1 || got[0].Headers["X-N"] != "2" {
		t.Errorf("a's rejections: %+v, want its one kept", got)
	}
	if got := l.List("b", 1); len(got) != 1 || got[0].Headers["X-N"] != "3" {
		t.Errorf("b's newest: %+v", got)
	}
	if n := l.Purge(start.Add(3 * time.Second)); n != 2 {
		t.Errorf("purged %d, want the two received before the cutoff", n)
	}
	if got := l.List("", 10); len(got) != 1 || got[0].Headers["X-N"] != "3" {
		t.Errorf("after the purge: %+v", got)
	}
}

// TestMatch routes as the listener does: an unclean path is no provider's,
// a method the provider does not take is 405, and path parameters come out.
func TestMatch(t *testing.T) {
	p := &provider.Provider{Paths: []string{"/in/{id}"}, Methods: []string{http.MethodPost}}
	for _, tc := range []struct {
		method, path string
		status       int
		params       map[string]string
	}{
		{http.MethodPost, "/in/x", 0, map[string]string{"id": "x"}},
		{http.MethodGet, "/in/x", http.StatusMethodNotAllowed, nil},
		{http.MethodPost, "/in/../in/x", http.StatusNotFound, nil},
		{http.MethodPost, "/elsewhere", http.StatusNotFound, nil},
	} {
		req := httptest.NewRequest(tc.method, "http://127.0.0.1"+tc.path, nil)
		params, status := Match(p, req)
		if status != tc.status || !reflect.DeepEqual(params, tc.params) {
			t.Errorf("%s %s: %v %d, want %v %d", tc.method, tc.path, params, status, tc.params, tc.status)
		}
	}
}
