package outbound

import (
	"net/http"
	"testing"

	"github.com/hookrelay/hookrelay/engine/config"
)

// TestAuthKinds: each registered kind puts its credential where the
// destination reads it, names its missing field, and says what it sends as
// a credential; an unknown kind lists the registered ones.
func TestAuthKinds(t *testing.T) {
	empty := ""
	for _, tc := range []struct {
		c       config.AuthConfig
		where   func(*http.Request) string
		want    string
		secrets int
	}{
		{config.AuthConfig{Kind: "basic", Username: "u", Password: "p4ss"},
			func(r *http.Request) string { return r.Header.Get("Authorization") }, "Basic dTpwNHNz", 2},
		{config.AuthConfig{Kind: "bearer", Token: "t0k"},
			func(r *http.Request) string { return r.Header.Get("Authorization") }, "Bearer t0k", 1},
		{config.AuthConfig{Kind: "bearer", Token: "t0k", Scheme: &empty},
			func(r *http.Request) string { return r.Header.Get("Authorization") }, "t0k", 1},
		{config.AuthConfig{Kind: "header", APIKey: "k3y"},
			func(r *http.Request) string { return r.Header.Get("API-KEY") }, "k3y", 1},
		{config.AuthConfig{Kind: "query", Name: "key", APIKey: "k3y"},
			func(r *http.Request) string { return r.URL.RawQuery }, "a=1&key=k3y", 1},
	} {
		a, err := NewAuth(&tc.c)
		if err != nil {
			t.Fatalf("%s: %v", tc.c.Kind, err)
		}
		req, _ := http.NewRequest(http.MethodPost, "http://127.0.0.1/x?a=1", nil)
		a.Apply(req)
		if got := tc.where(req); got != tc.want {
			t.Errorf("%s: sent %q, want %q", tc.c.Kind, got, tc.want)
		}
		if n := len(a.Secrets()); n != tc.secrets {
			t.Errorf("%s: %d secrets, want %d", tc.c.Kind, n, tc.secrets)
		}
		missing := config.AuthConfig{Kind: tc.c.Kind}
		if _, err := NewAuth(&missing); err == nil {
			t.Errorf("%s without its credential: no error", tc.c.Kind)
		}
	}
	// The URL's own query is kept as written (order, escaping); a
	// parameter of the key's name is replaced.
	a, _ := NewAuth(&config.AuthConfig{Kind: "query", Name: "key", APIKey: "k 3y"})
	for url, want := range map[string]string{
		"http://127.0.0.1/x?z=1&b=a,c":     "z=1&b=a,c&key=k+3y",
		"http://127.0.0.1/x":               "key=k+3y",
		"http://127.0.0.1/x?key=old&z=1&b": "b=&key=k+3y&z=1",
	} {
		req, _ := http.NewRequest(http.MethodPost, url, nil)
		a.Apply(req)
		if req.URL.RawQuery != want {
			t.Errorf("%s: query %q, want %q", url, req.URL.RawQuery, want)
		}
	}
	_, err := NewAuth(&config.AuthConfig{Kind: "digest"})
	if want := `auth.kind: "digest" is not one of basic, bearer, header, query`; err == nil || err.Error() != want {
		t.Errorf("unknown kind: %v, want %s", err, want)
	}
}
