package verifiers_test

import (
	"context"
	"testing"

	"github.com/hookrelay/hookrelay/verifiers"
)

func TestIP(t *testing.T) {
	direct := map[string]any{"allow": []string{"192.0.2.0/24", "2001:db8::1", "198.51.100.7"}}
	proxied := map[string]any{"allow": []string{"203.0.113.0/24"}, "trust_forwarded": true}
	twoHops := map[string]any{"allow": []string{"203.0.113.0/24"}, "trust_forwarded": true, "trusted_hops": 2}
	at := func(remote string, headers ...string) *verifiers.Request {
		r := req(body, headers...)
		r.RemoteAddr = remote
		return r
	}
	tests := []struct {
		name string
		cfg  map[string]any
		req  *verifiers.Request
		want error
	}{
		{"in prefix", direct, at("192.0.2.55:1234"), nil},
		{"single v4", direct, at("198.51.100.7:80"), nil},
		{"single v4 neighbour", direct, at("198.51.100.8:80"), verifiers.ErrForbidden},
		{"single v6", direct, at("[2001:db8::1]:443"), nil},
		{"v6 with zone", direct, at("[2001:db8::1%eth0]:443"), nil},
		{"v4-mapped v6", direct, at("[::ffff:192.0.2.9]:443"), nil},
		{"outside", direct, at("203.0.113.9:1234"), verifiers.ErrForbidden},
		{"forwarded ignored by default", direct, at("203.0.113.9:1234", "X-Forwarded-For", "192.0.2.1"), verifiers.ErrForbidden},
		{"no remote address", direct, at(""), verifiers.ErrMissing},
		{"garbage remote address", direct, at("not-an-ip"), verifiers.ErrMalformed},
		// One trusted hop: the right-most entry is the client the proxy saw;
		// entries left of it are whatever the client wrote.
		{"trusted forwarded rightmost", proxied, at("10.0.0.1:1", "X-Forwarded-For", "198.51.100.1, 203.0.113.5"), nil},
		{"spoofed leftmost", proxied, at("10.0.0.1:1", "X-Forwarded-For", "203.0.113.5, 198.51.100.1"), verifiers.ErrForbidden},
		{"spoofed in an earlier header line", proxied, at("10.0.0.1:1", "X-Forwarded-For", "203.0.113.5", "X-Forwarded-For", "198.51.100.1"), verifiers.ErrForbidden},
		{"two header lines, last allowed", proxied, at("10.0.0.1:1", "X-Forwarded-For", "198.51.100.1", "X-Forwarded-For", "203.0.113.5"), nil},
		{"trusted forwarded single", proxied, at("10.0.0.1:1", "X-Forwarded-For", "203.0.113.5"), nil},
		{"trusted forwarded with port", proxied, at("10.0.0.1:1", "X-Forwarded-For", "203.0.113.5:6000"), nil},
		{"trusted forwarded missing", proxied, at("203.0.113.5:1"), verifiers.ErrMissing},
		{"trusted forwarded garbage", proxied, at("10.0.0.1:1", "X-Forwarded-For", "unknown"), verifiers.ErrMalformed},
		{"trusted forwarded empty last", proxied, at("10.0.0.1:1", "X-Forwarded-For", "203.0.113.5,"), verifiers.ErrMissing},
		// Two hops (CDN, then a load balancer): the client is second from the right.
		{"two hops", twoHops, at("10.0.0.1:1", "X-Forwarded-For", "198.51.100.1, 203.0.113.5, 10.0.0.9"), nil},
		{"two hops, spoofed", twoHops, at("10.0.0.1:1", "X-Forwarded-For", "203.0.113.5, 198.51.100.1, 10.0.0.9"), verifiers.ErrForbidden},
		{"two hops, too few entries", twoHops, at("10.0.0.1:1", "X-Forwarded-For", "203.0.113.5"), verifiers.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkErr(t, mustBuild(t, "ip", tt.cfg).Verify(context.Background(), tt.req), tt.want)
		})
	}
}

func TestIPConfigErrors(t *testing.T) {
	tests := []struct {
		name  string
		cfg   map[string]any
		field string
	}{
		{"empty", map[string]any{}, "allow"},
		{"bad entry", map[string]any{"allow": []string{"10.0.0.0/8", "10.0.0.300"}}, "allow[1]"},
		{"hostname", map[string]any{"allow": []string{"example.com"}}, "allow[0]"},
		{"hops without trust_forwarded", map[string]any{"allow": []string{"10.0.0.0/8"}, "trusted_hops": 1}, "trusted_hops"},
		{"negative hops", map[string]any{"allow": []string{"10.0.0.0/8"}, "trust_forwarded": true, "trusted_hops": -1}, "trusted_hops"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := build("ip", tt.cfg)
			wantFieldError(t, err, tt.field)
		})
	}
}
