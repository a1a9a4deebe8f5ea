package admin

import "testing"

// TestAdminHostAllowed: the Host rule on its own, for the listen addresses a
// relay.yaml may give.
func TestAdminHostAllowed(t *testing.T) {
	for _, c := range []struct {
		host, listen string
		hosts        []string
		want         bool
	}{
		{"127.0.0.1:9090", "127.0.0.1:9090", nil, true},
		{"127.0.0.2", "127.0.0.1:9090", nil, true},
		{"LOCALHOST:9090", "127.0.0.1:9090", nil, true},
		{"[::1]", "127.0.0.1:9090", nil, true},
		{"", "127.0.0.1:9090", nil, true},
		{"10.0.0.5:9090", "10.0.0.5:9090", nil, true},
		{"10.0.0.6:9090", "10.0.0.5:9090", nil, false},
		{"10.0.0.6:9090", ":9090", nil, true},
		{"10.0.0.6:9090", "0.0.0.0:9090", nil, true},
		{"[fd00::1]:9090", "[::]:9090", nil, true},
		{"relay.internal:9090", ":9090", nil, false},
		{"relay.internal:9090", ":9090", []string{"Relay.Internal"}, true},
		{"relay.internal:9091", ":9090", []string{"relay.internal:9090"}, false},
		{"relay.internal:9090", ":9090", []string{"relay.internal:9090"}, true},
		{"admin.example:9090", "admin.example:9090", nil, true},
		{"evil.example:9090", "127.0.0.1:9090", nil, false},
		{"127.0.0.1.evil.example", "127.0.0.1:9090", nil, false},
	} {
		if got := adminHostAllowed(c.host, c.listen, c.hosts); got != c.want {
			t.Errorf("adminHostAllowed(%q, %q, %q) = %v, want %v", c.host, c.listen, c.hosts, got, c.want)
		}
	}
}
