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
	// TrustForwarded takes the peer from the leftmost X-Forwarded-For address
	// instead of the connection. Only set it behind a proxy that replaces the
	// header: a client can write anything into one it merely appends to.
	// False means the connection's address.
	TrustForwarded bool `koanf:"trust_forwarded"`
}

// IP checks the peer address against an allow list.
type IP struct {
	allow          []netip.Prefix
	trustForwarded bool
}

var _ Verifier = (*IP)(nil)

// NewIP validates c and returns the verifier. Errors are *ConfigError.
func NewIP(c IPConfig) (*IP, error) {
	if len(c.Allow) == 0 {
		return nil, FieldError("allow", "must list at least one address or CIDR prefix")
	}
	v := &IP{trustForwarded: c.TrustForwarded}
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
	if v.trustForwarded {
		src = "X-Forwarded-For"
		raw = req.Header.Get("X-Forwarded-For")
		raw, _, _ = strings.Cut(raw, ",")
		raw = strings.TrimSpace(raw)
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
