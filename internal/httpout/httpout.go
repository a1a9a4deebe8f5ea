// Package httpout holds the pieces every outgoing HTTP request of the relay
// shares, below both of their users: engine/outbound (deliveries,
// registrations, polls) and verifiers (JWK set fetches). It is a leaf: it
// imports go-cleanhttp and the standard library only.
package httpout

import (
	"errors"
	"io"
	"net/http"
	"net/url"

	"github.com/hashicorp/go-cleanhttp"
)

// Client is a pooled client (go-cleanhttp: its own transport, with
// timeouts on dialing and handshakes) whose redirects redirect decides
// (http.Client.CheckRedirect; NoRedirect answers them as they are).
// idlePerHost is how many idle connections it keeps per host; 0 keeps
// go-cleanhttp's default.
func Client(idlePerHost int, redirect func(*http.Request, []*http.Request) error) *http.Client {
	hc := cleanhttp.DefaultPooledClient()
	hc.CheckRedirect = redirect
	if idlePerHost > 0 {
		hc.Transport.(*http.Transport).MaxIdleConnsPerHost = idlePerHost
	}
	return hc
}

// NoRedirect is a CheckRedirect that follows no redirect: the answer is
// the 3xx itself.
func NoRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// ReadAnswer reads an answer's body up to limit bytes. whole is false when
// the body is longer: raw then holds its first limit bytes.
func ReadAnswer(r io.Reader, limit int64) (raw []byte, whole bool, err error) {
	raw, err = io.ReadAll(io.LimitReader(r, limit+1))
	if int64(len(raw)) > limit {
		return raw[:limit], false, err
	}
	return raw, true, err
}

// TransportError is a transport's error without the *url.Error around it,
// which quotes the whole URL, userinfo and query included.
func TransportError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
