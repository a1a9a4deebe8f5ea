package engine

import (
	"crypto/sha256"
	"encoding/hex"
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

// add keeps one refused request. The log is for people to read: reason
// comes masked (provider.Provider.MaskRefused), and credential headers are masked here.
func (l *rejectionLog) add(p *Provider, req *verifiers.Request, reason string) {
	sum := sha256.Sum256(req.Body)
	rj := Rejection{
		At: req.Received.UTC(), Provider: p.Name, Path: req.Path, Reason: reason,
		Headers: p.MaskHeaders(req.Header), BodySHA256: hex.EncodeToString(sum[:]), RemoteAddr: req.RemoteAddr,
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
