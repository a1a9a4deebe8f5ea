package provider

import (
	"net/http"
	"net/url"
	"slices"

	"github.com/hookrelay/hookrelay/engine/internal/headers"
	"github.com/hookrelay/hookrelay/internal/redact"
	"github.com/hookrelay/hookrelay/verifiers"
)

// Credentials (SPEC 11): where a provider's verifiers read them, so that
// every place that shows or keeps a request masks them.

// credentialNames are where a provider's verifiers read credentials from:
// canonical header names, exact query parameter names.
type credentialNames struct{ headers, query map[string]bool }

// readCredentials asks vs where they read credentials; a header that
// sensitive declares is masked like a credential.
func readCredentials(vs []verifiers.Verifier, sensitive *redact.Paths) credentialNames {
	c := credentialNames{headers: map[string]bool{}, query: map[string]bool{}}
	for _, h := range sensitive.HeaderNames() {
		c.headers[http.CanonicalHeaderKey(h)] = true
	}
	for _, v := range vs {
		if cr, ok := v.(verifiers.CredentialReader); ok {
			hs, qs := cr.CredentialNames()
			for _, h := range hs {
				c.headers[http.CanonicalHeaderKey(h)] = true
			}
			for _, q := range qs {
				c.query[q] = true
			}
		}
	}
	return c
}

// secret reports whether header name holds a credential: by what it is
// called, or because a verifier reads one from it.
func (c credentialNames) secret(name string) bool {
	return headers.Secret(name) || c.headers[http.CanonicalHeaderKey(name)]
}

// MaskHeaders returns the first value of each header, the credentials p's
// verifiers read (and its sensitive headers) masked; p may be nil (a
// quarantined request of a provider no longer configured): then only
// headers named as credentials are.
func (p *Provider) MaskHeaders(h map[string][]string) map[string]string {
	var c credentialNames
	if p != nil {
		c = p.creds
	}
	out := make(map[string]string, len(h))
	for k, v := range h {
		if len(v) == 0 {
			continue
		}
		out[k] = v[0]
		if c.secret(k) {
			out[k] = redact.Mask
		}
	}
	return out
}

// MaskRequest returns copies of h and q with every credential value masked,
// for what is stored (the quarantine): the spool never holds an inbound
// credential in clear. Verification has passed; nothing later needs them.
func (p *Provider) MaskRequest(h http.Header, q url.Values) (http.Header, url.Values) {
	c := p.creds
	mh := make(http.Header, len(h))
	for k, vs := range h {
		mh[k] = slices.Clone(vs)
		if c.secret(k) {
			for i := range mh[k] {
				mh[k][i] = redact.Mask
			}
		}
	}
	var mq url.Values
	if q != nil {
		mq = make(url.Values, len(q))
		for k, vs := range q {
			mq[k] = slices.Clone(vs)
			if c.query[k] {
				for i := range mq[k] {
					mq[k][i] = redact.Mask
				}
			}
		}
	}
	return mh, mq
}
