package engine

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"sync"
	"time"

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

func (l *rejectionLog) add(provider string, req *verifiers.Request, reason string) {
	sum := sha256.Sum256(req.Body)
	rj := Rejection{
		At: req.Received.UTC(), Provider: provider, Path: req.Path, Reason: reason,
		Headers: maskHeaders(req.Header), BodySHA256: hex.EncodeToString(sum[:]), RemoteAddr: req.RemoteAddr,
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ring[l.next] = rj
	l.next = (l.next + 1) % len(l.ring)
	l.full = l.full || l.next == 0
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
		if provider == "" || rj.Provider == provider {
			out = append(out, rj)
		}
	}
	return out
}

// secretHeaderWords mark headers whose values are credentials or signatures.
var secretHeaderWords = []string{"auth", "token", "key", "secret", "signature", "cookie", "password"}

// maskHeaders returns the first value of each header, credentials masked.
func maskHeaders(h map[string][]string) map[string]string {
	out := make(map[string]string, len(h))
	for k, v := range h {
		if len(v) == 0 {
			continue
		}
		out[k] = v[0]
		if secretHeader(k) {
			out[k] = "***"
		}
	}
	return out
}

// secretHeader reports whether a header's name says it holds a credential.
func secretHeader(name string) bool {
	name = strings.ToLower(name)
	for _, w := range secretHeaderWords {
		if strings.Contains(name, w) {
			return true
		}
	}
	return false
}
