package verifiers_test

import (
	"context"
	"encoding/base64"
	"testing"

	"github.com/hookrelay/hookrelay/verifiers"
)

func TestToken(t *testing.T) {
	kompar := map[string]any{"token": "kompar-token"}
	prefixed := map[string]any{"header": "X-Auth", "prefix": "token ", "tokens": []string{"old", "new"}}
	tests := []struct {
		name string
		cfg  map[string]any
		req  *verifiers.Request
		want error
	}{
		{"bare token in Authorization", kompar, req(body, "Authorization", "kompar-token"), nil},
		{"wrong token", kompar, req(body, "Authorization", "kompar-tokeN"), verifiers.ErrMismatch},
		{"token is a prefix of the header", kompar, req(body, "Authorization", "kompar-token2"), verifiers.ErrMismatch},
		{"missing header", kompar, req(body), verifiers.ErrMissing},
		{"prefix and rotation old", prefixed, req(body, "X-Auth", "token old"), nil},
		{"prefix and rotation new", prefixed, req(body, "x-auth", "token new"), nil},
		{"prefix is exact", prefixed, req(body, "X-Auth", "Token new"), verifiers.ErrMalformed},
		{"no prefix", prefixed, req(body, "X-Auth", "new"), verifiers.ErrMalformed},
		{"prefix but empty token", prefixed, req(body, "X-Auth", "token "), verifiers.ErrMismatch},
		{"token in the other header", prefixed, req(body, "Authorization", "token new"), verifiers.ErrMissing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkErr(t, mustBuild(t, "token", tt.cfg).Verify(context.Background(), tt.req), tt.want)
		})
	}
}

func TestBearer(t *testing.T) {
	one := map[string]any{"token": "abc123"}
	two := map[string]any{"tokens": []string{"abc123", "def456"}}
	tests := []struct {
		name string
		cfg  map[string]any
		req  *verifiers.Request
		want error
	}{
		{"good", one, req(body, "Authorization", "Bearer abc123"), nil},
		{"scheme is case-insensitive", one, req(body, "Authorization", "bearer abc123"), nil},
		{"extra spaces", one, req(body, "Authorization", "BEARER   abc123"), nil},
		{"rotation second", two, req(body, "Authorization", "Bearer def456"), nil},
		{"wrong token", two, req(body, "Authorization", "Bearer ghi789"), verifiers.ErrMismatch},
		{"token is case-sensitive", one, req(body, "Authorization", "Bearer ABC123"), verifiers.ErrMismatch},
		{"missing", one, req(body), verifiers.ErrMissing},
		{"basic scheme", one, req(body, "Authorization", "Basic abc123"), verifiers.ErrMalformed},
		{"no scheme", one, req(body, "Authorization", "abc123"), verifiers.ErrMalformed},
		{"empty token", one, req(body, "Authorization", "Bearer "), verifiers.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkErr(t, mustBuild(t, "bearer", tt.cfg).Verify(context.Background(), tt.req), tt.want)
		})
	}
}

func TestBasic(t *testing.T) {
	cfg := map[string]any{"users": map[string]any{"avida": "p@ss:word", "broker": "hunter2"}}
	basic := func(userpass string) string { return "Basic " + base64.StdEncoding.EncodeToString([]byte(userpass)) }
	tests := []struct {
		name string
		req  *verifiers.Request
		want error
	}{
		{"good", req(body, "Authorization", basic("avida:p@ss:word")), nil},
		{"second user", req(body, "Authorization", basic("broker:hunter2")), nil},
		{"scheme is case-insensitive", req(body, "Authorization", "basic "+base64.StdEncoding.EncodeToString([]byte("broker:hunter2"))), nil},
		{"wrong password", req(body, "Authorization", basic("avida:hunter2")), verifiers.ErrMismatch},
		{"unknown user", req(body, "Authorization", basic("mallory:hunter2")), verifiers.ErrMismatch},
		{"empty password", req(body, "Authorization", basic("avida:")), verifiers.ErrMismatch},
		{"missing", req(body), verifiers.ErrMissing},
		{"not base64", req(body, "Authorization", "Basic %%%"), verifiers.ErrMalformed},
		{"no colon", req(body, "Authorization", basic("avida")), verifiers.ErrMalformed},
		{"bearer scheme", req(body, "Authorization", "Bearer hunter2"), verifiers.ErrMalformed},
	}
	v := mustBuild(t, "basic", cfg)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkErr(t, v.Verify(context.Background(), tt.req), tt.want) })
	}
	t.Run("unknown and wrong read the same", func(t *testing.T) {
		e1 := v.Verify(context.Background(), req(body, "Authorization", basic("avida:x")))
		e2 := v.Verify(context.Background(), req(body, "Authorization", basic("nobody:x")))
		if e1.Error() != e2.Error() {
			t.Fatalf("%q != %q: the reason reveals which users exist", e1, e2)
		}
	})
}

func TestAPIKey(t *testing.T) {
	hdr := map[string]any{"key": "k-1"}
	named := map[string]any{"name": "X-Api-Token", "keys": []string{"k-1", "k-2"}}
	query := map[string]any{"in": "query", "key": "k-1"}
	tests := []struct {
		name  string
		cfg   map[string]any
		req   *verifiers.Request
		query string
		want  error
	}{
		{"default header", hdr, req(body, "API-KEY", "k-1"), "", nil},
		{"header is case-insensitive", hdr, req(body, "api-key", "k-1"), "", nil},
		{"wrong key", hdr, req(body, "API-KEY", "k-2"), "", verifiers.ErrMismatch},
		{"missing", hdr, req(body), "", verifiers.ErrMissing},
		{"key in query, expected in header", hdr, req(body), "k-1", verifiers.ErrMissing},
		{"named header, rotation", named, req(body, "X-Api-Token", "k-2"), "", nil},
		{"query", query, req(body), "k-1", nil},
		{"query wrong", query, req(body), "k-3", verifiers.ErrMismatch},
		{"query missing", query, req(body, "API-KEY", "k-1"), "", verifiers.ErrMissing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.query != "" {
				tt.req.Query.Set("API-KEY", tt.query)
			}
			checkErr(t, mustBuild(t, "apikey", tt.cfg).Verify(context.Background(), tt.req), tt.want)
		})
	}
}

func TestTokenConfigErrors(t *testing.T) {
	tests := []struct {
		name  string
		kind  string
		cfg   map[string]any
		field string
	}{
		{"token: none", "token", map[string]any{"header": "X"}, "token"},
		{"token: both", "token", map[string]any{"token": "a", "tokens": []string{"b"}}, "token"},
		{"token: empty entry", "token", map[string]any{"tokens": []string{""}}, "tokens[0]"},
		{"bearer: none", "bearer", map[string]any{}, "token"},
		{"basic: no users", "basic", map[string]any{}, "users"},
		{"basic: empty password", "basic", map[string]any{"users": map[string]any{"a": ""}}, "users.a"},
		{"basic: colon in name", "basic", map[string]any{"users": map[string]any{"a:b": "c"}}, "users"},
		{"apikey: none", "apikey", map[string]any{"in": "header"}, "key"},
		{"apikey: unknown in", "apikey", map[string]any{"in": "cookie", "key": "k"}, "in"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := build(tt.kind, tt.cfg)
			wantFieldError(t, err, tt.field)
		})
	}
}
