package engine

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/hookrelay/hookrelay/engine/internal/headers"
	"github.com/hookrelay/hookrelay/internal/redact"
	"github.com/hookrelay/hookrelay/verifiers"
)

// Rejection is one refused request, kept for the admin API (SPEC 6).
type Rejection struct {
	At         time.Time         `json:"at"`
	Provider   string            `json:"provider"`
	Path       string            `json:"path"`
	Reason     string            `json:"reason"`
	Headers    map[string]string `json:"headers"`
	BodySHA256 string            `json:"body_sha256"`
	RemoteAddr string            `json:"remote_addr"`
}

// rejectionLog keeps the last `size` rejections.
type rejectionLog struct {
	mu   sync.Mutex
	ring []Rejection
	next int
	full bool
}

func newRejectionLog(size int) *rejectionLog { return &rejectionLog{ring: make([]Rejection, size)} }

// add keeps one refused request. The log is for people to read: reason
// comes masked (Provider.maskRefused), and credential headers are masked here.
func (l *rejectionLog) add(p *Provider, req *verifiers.Request, reason string) {
	sum := sha256.Sum256(req.Body)
	rj := Rejection{
		At: req.Received.UTC(), Provider: p.Name, Path: req.Path, Reason: reason,
		Headers: maskHeaders(req.Header, credentialsOf(p)), BodySHA256: hex.EncodeToString(sum[:]), RemoteAddr: req.RemoteAddr,
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ring[l.next] = rj
	l.next = (l.next + 1) % len(l.ring)
	l.full = l.full || l.next == 0
}

// purge drops the rejections received before cutoff (SPEC 11 retention)
// and returns how many.
func (l *rejectionLog) purge(cutoff time.Time) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for i := range l.ring {
		if !l.ring[i].At.IsZero() && l.ring[i].At.Before(cutoff) {
			l.ring[i] = Rejection{}
			n++
		}
	}
	return n
}

// list returns up to limit rejections of provider ("" for all), newest first.
func (l *rejectionLog) list(provider string, limit int) []Rejection {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.next
	if l.full {
		n = len(l.ring)
	}
	out := []Rejection{}
	for i := 1; i <= n && len(out) < limit; i++ {
		rj := l.ring[(l.next-i+len(l.ring))%len(l.ring)]
		if rj.At.IsZero() {
			continue // purged
		}
		if provider == "" || rj.Provider == provider {
			out = append(out, rj)
		}
	}
	return out
}

// credentialNames are where a provider's verifiers read credentials from:
// canonical header names, exact query parameter names.
type credentialNames struct{ headers, query map[string]bool }

// credentialsOf is where p's verifiers read credentials; p may be nil (a
// quarantined request of a provider no longer configured): none then.
func credentialsOf(p *Provider) credentialNames {
	if p == nil {
		return credentialNames{}
	}
	return p.creds
}

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

// maskHeaders returns the first value of each header, credentials masked.
func maskHeaders(h map[string][]string, c credentialNames) map[string]string {
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

// maskRequest returns copies of h and q with every credential value masked,
// for what is stored (the quarantine): the spool never holds an inbound
// credential in clear. Verification has passed; nothing later needs them.
func maskRequest(h http.Header, q url.Values, c credentialNames) (http.Header, url.Values) {
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
