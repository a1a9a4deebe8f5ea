package verifiers

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
)

func init() { Register("ip", Build(NewIP)) }

// IPConfig is the configuration block of the ip kind.
type IPConfig struct {
	// Allow lists the permitted peers as CIDR prefixes ("203.0.113.0/24") or
	// single addresses ("2001:db8::1"). At least one entry.
	Allow []string `koanf:"allow"`
	// TrustForwarded takes the peer from X-Forwarded-For instead of the
	// connection, for a relay behind proxies of its own. Each proxy appends
	// the address it was reached from, so only the right end of the list is
	// theirs: everything left of it is what the client sent, and can be
	// anything. False means the connection's address.
	TrustForwarded bool `koanf:"trust_forwarded"`
	// TrustedHops is how many proxies of yours stand in front of the relay,
	// each appending to X-Forwarded-For: the client is the entry that many
	// from the right end (1: the last entry, what the proxy next to the
	// relay saw). A request whose header has fewer entries is refused. Only
	// with TrustForwarded; zero means 1.
	TrustedHops int `koanf:"trusted_hops"`
}

// IP checks the peer address against an allow list.
type IP struct {
	allow []netip.Prefix
	hops  int // entries from the right of X-Forwarded-For; 0: the connection's address
}

var _ Verifier = (*IP)(nil)

// NewIP validates c and returns the verifier. Errors are *ConfigError.
func NewIP(c IPConfig) (*IP, error) {
	if len(c.Allow) == 0 {
		return nil, FieldError("allow", "must list at least one address or CIDR prefix")
	}
	v := &IP{}
	switch {
	case c.TrustedHops < 0:
		return nil, FieldError("trusted_hops", "must not be negative")
	case c.TrustedHops > 0 && !c.TrustForwarded:
		return nil, FieldError("trusted_hops", "applies only with trust_forwarded: true")
	case c.TrustForwarded:
		v.hops = max(c.TrustedHops, 1)
	}
	for i, s := range c.Allow {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return nil, FieldError(fmt.Sprintf("allow[%d]", i), "%q is neither an address nor a CIDR prefix", s)
			}
			p = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		}
		v.allow = append(v.allow, p.Masked())
	}
	return v, nil
}

// Verify checks the peer address.
func (v *IP) Verify(_ context.Context, req *Request) error {
	src, raw := "remote address", req.RemoteAddr
	if v.hops > 0 {
		src = "X-Forwarded-For"
		// Several header lines are one list, in order (RFC 9110 5.3).
		var entries []string
		for _, line := range req.Header.Values("X-Forwarded-For") {
			for _, e := range strings.Split(line, ",") {
				entries = append(entries, strings.TrimSpace(e))
			}
		}
		switch {
		case len(entries) == 0:
			raw = ""
		case len(entries) < v.hops:
			return reject(ErrMalformed, "X-Forwarded-For has %d entries, fewer than the %d trusted hops", len(entries), v.hops)
		default:
			raw = entries[len(entries)-v.hops]
		}
	}
	if raw == "" {
		return reject(ErrMissing, "no %s", src)
	}
	addr, err := parseAddr(raw)
	if err != nil {
		return reject(ErrMalformed, "%s %q is not an address", src, raw)
	}
	for _, p := range v.allow {
		if p.Contains(addr) {
			return nil
		}
	}
	return reject(ErrForbidden, "%s", addr)
}

// parseAddr reads "host:port", "[v6]:port" or a bare address, and unmaps
// IPv4-in-IPv6 so that ::ffff:192.0.2.1 matches 192.0.2.0/24.
func parseAddr(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		ap, perr := netip.ParseAddrPort(s)
		if perr != nil {
			return netip.Addr{}, err
		}
		a = ap.Addr()
	}
	return a.Unmap().WithZone(""), nil
}
