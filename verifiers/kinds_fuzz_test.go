package verifiers_test

import (
	"context"
	"encoding/base64"
	"net/netip"
	"net/url"
	"strings"
	"testing"

	"github.com/hookrelay/hookrelay/verifiers"
)

// The secrets of the kinds fuzzed here: distinctive, so that a rejection
// quoting one is found by a plain substring search.
const (
	fuzzTok  = "tok-s3cr3t-fuzz"
	fuzzTok2 = "tok-s3cr3t-rotated"
	fuzzPass = "pass-s3cr3t-fuzz"
)

// noSecret fails when a rejection quotes one of the secrets.
func noSecret(t *testing.T, err error, secrets ...string) {
	t.Helper()
	if err == nil {
		return
	}
	for _, s := range secrets {
		if strings.Contains(err.Error(), s) {
			t.Fatalf("rejection discloses the secret %q: %v", s, err)
		}
	}
}

// FuzzTokenVerify sends arbitrary header values to token verifiers, with and
// without a prefix: only the exact prefix and token pass.
func FuzzTokenVerify(f *testing.F) {
	f.Add("token "+fuzzTok, "")
	f.Add(fuzzTok2, "token "+fuzzTok2)
	f.Add("Token "+fuzzTok, "token  "+fuzzTok)
	f.Add("", "token")
	f.Add("token \x00"+fuzzTok, fuzzTok+"\n")
	prefixed := mustBuild(f, "token", map[string]any{"header": "X-Token", "prefix": "token ", "token": fuzzTok})
	bare := mustBuild(f, "token", map[string]any{"tokens": []string{fuzzTok, fuzzTok2}})
	f.Fuzz(func(t *testing.T, xtoken, authorization string) {
		r := req(body, "X-Token", xtoken, "Authorization", authorization)
		err := prefixed.Verify(context.Background(), r)
		reason(t, err)
		noSecret(t, err, fuzzTok)
		if want := xtoken == "token "+fuzzTok; (err == nil) != want {
			t.Fatalf("X-Token %q: got %v, want accepted %v", xtoken, err, want)
		}
		err = bare.Verify(context.Background(), r)
		reason(t, err)
		noSecret(t, err, fuzzTok, fuzzTok2)
		if want := authorization == fuzzTok || authorization == fuzzTok2; (err == nil) != want {
			t.Fatalf("Authorization %q: got %v, want accepted %v", authorization, err, want)
		}
	})
}

// FuzzBearerVerify sends arbitrary Authorization values to a bearer
// verifier: only "Bearer" (any case), spaces and a token pass.
func FuzzBearerVerify(f *testing.F) {
	f.Add("Bearer " + fuzzTok)
	f.Add("bEaReR    " + fuzzTok2)
	f.Add("Bearer")
	f.Add("Bearer ")
	f.Add("Bearer\t" + fuzzTok)
	f.Add("Basic " + fuzzTok)
	f.Add(" Bearer " + fuzzTok + " ")
	v := mustBuild(f, "bearer", map[string]any{"tokens": []string{fuzzTok, fuzzTok2}})
	f.Fuzz(func(t *testing.T, authorization string) {
		err := v.Verify(context.Background(), req(body, "Authorization", authorization))
		reason(t, err)
		noSecret(t, err, fuzzTok, fuzzTok2)
		scheme, cred, _ := strings.Cut(authorization, " ")
		cred = strings.TrimLeft(cred, " ")
		want := strings.EqualFold(scheme, "Bearer") && (cred == fuzzTok || cred == fuzzTok2)
		if (err == nil) != want {
			t.Fatalf("Authorization %q: got %v, want accepted %v", authorization, err, want)
		}
	})
}

// FuzzBasicVerify sends arbitrary Basic credentials, both raw and as
// base64 of a fuzzed user:password: only a listed user with its password passes.
func FuzzBasicVerify(f *testing.F) {
	f.Add("Basic dTpw", "u", fuzzPass)
	f.Add("basic   "+base64.StdEncoding.EncodeToString([]byte("admin:"+fuzzPass)), "admin", "wrong")
	f.Add("Basic ====", "", "")
	f.Add("Basic dTpw\x00", "u:x", "y")
	f.Add("Basic "+base64.RawStdEncoding.EncodeToString([]byte("u:"+fuzzPass)), "\xff", ":")
	v := mustBuild(f, "basic", map[string]any{"users": map[string]any{"u": fuzzPass, "admin": fuzzPass + "2"}})
	users := map[string]string{"u": fuzzPass, "admin": fuzzPass + "2"}
	f.Fuzz(func(t *testing.T, raw, user, pass string) {
		err := v.Verify(context.Background(), req(body, "Authorization", raw))
		reason(t, err)
		noSecret(t, err, fuzzPass)

		err = v.Verify(context.Background(), req(body, "Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(user+":"+pass))))
		reason(t, err)
		noSecret(t, err, fuzzPass)
		// The user name ends at the first ':', as RFC 7617 says.
		u, p, _ := strings.Cut(user+":"+pass, ":")
		want, known := users[u]
		if ok := known && p == want; (err == nil) != ok {
			t.Fatalf("user %q password %q: got %v, want accepted %v", user, pass, err, ok)
		}
	})
}

// FuzzAPIKeyVerify sends arbitrary header and query values to apikey
// verifiers: only an exact key passes.
func FuzzAPIKeyVerify(f *testing.F) {
	f.Add(fuzzTok, "k="+fuzzTok2)
	f.Add(" "+fuzzTok, "k=&k="+fuzzTok)
	f.Add("", "k=tok-s3cr3t-fuzz%00")
	f.Add(fuzzTok2, "%zz;k=1&&=")
	inHeader := mustBuild(f, "apikey", map[string]any{"keys": []string{fuzzTok, fuzzTok2}})
	inQuery := mustBuild(f, "apikey", map[string]any{"in": "query", "name": "k", "key": fuzzTok})
	f.Fuzz(func(t *testing.T, header, rawQuery string) {
		r := req(body, "API-KEY", header)
		r.Query, _ = url.ParseQuery(rawQuery)
		err := inHeader.Verify(context.Background(), r)
		reason(t, err)
		noSecret(t, err, fuzzTok, fuzzTok2)
		if want := header == fuzzTok || header == fuzzTok2; (err == nil) != want {
			t.Fatalf("API-KEY %q: got %v, want accepted %v", header, err, want)
		}
		err = inQuery.Verify(context.Background(), r)
		reason(t, err)
		noSecret(t, err, fuzzTok)
		if want := r.Query.Get("k") == fuzzTok; (err == nil) != want {
			t.Fatalf("query %q: got %v, want accepted %v", rawQuery, err, want)
		}
	})
}

// FuzzIPVerify checks arbitrary peer and X-Forwarded-For addresses against
// an allow list with a fuzzed entry: the entry is either a config error for
// allow[0] or a prefix, and a peer passes only when inside the list.
func FuzzIPVerify(f *testing.F) {
	f.Add("192.0.2.1:54321", "203.0.113.5, 10.0.0.1", "203.0.113.0/24")
	f.Add("[2001:db8::1%eth0]:443", "[::ffff:198.51.100.7]:80", "2001:db8::/127")
	f.Add("[::ffff:203.0.113.9]:1", "unknown", "::ffff:203.0.113.0/120")
	f.Add("not-an-ip", " ,", "10.0.0.300")
	f.Add("", "198.51.100.7", "198.51.100.7")
	f.Add("0.0.0.0:0", "::", "0.0.0.0/0")
	f.Fuzz(func(t *testing.T, remote, forwarded, allow string) {
		var vs []verifiers.Verifier
		for _, trust := range []bool{false, true} {
			v, err := build("ip", map[string]any{"allow": []string{allow, "192.0.2.0/24"}, "trust_forwarded": trust})
			if err != nil {
				wantFieldError(t, err, "allow[0]")
				return
			}
			vs = append(vs, v)
		}
		// An independent reading of the list: the entry as a prefix, or as
		// one address (unmapped, as the peer is).
		var list []netip.Prefix
		if p, err := netip.ParsePrefix(allow); err == nil {
			list = append(list, p.Masked())
		} else if a, err := netip.ParseAddr(allow); err == nil {
			list = append(list, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
		} else {
			t.Fatalf("allow entry %q accepted but not an address or prefix", allow)
		}
		list = append(list, netip.MustParsePrefix("192.0.2.0/24"))

		r := req(body, "X-Forwarded-For", forwarded)
		r.RemoteAddr = remote
		// With one trusted hop the client is the right-most entry.
		rightmost := forwarded[strings.LastIndexByte(forwarded, ',')+1:]
		for i, peer := range []string{remote, strings.TrimSpace(rightmost)} {
			err := vs[i].Verify(context.Background(), r)
			reason(t, err)
			if err != nil {
				continue
			}
			a, aerr := netip.ParseAddr(peer)
			if aerr != nil {
				ap, perr := netip.ParseAddrPort(peer)
				if perr != nil {
					t.Fatalf("peer %q accepted but not an address", peer)
				}
				a = ap.Addr()
			}
			a = a.Unmap().WithZone("")
			inside := false
			for _, p := range list {
				inside = inside || p.Contains(a)
			}
			if !inside {
				t.Fatalf("peer %q accepted, not in %v", peer, list)
			}
		}
	})
}
