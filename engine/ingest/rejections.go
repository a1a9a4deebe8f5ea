package ingest

import (
	"crypto/sha256"
	"encoding/hex"
	"sync"
	"time"

	"github.com/hookrelay/hookrelay/engine/provider"
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

// Rejections keeps the last refused requests, a fixed number of them.
type Rejections struct {
	mu   sync.Mutex
	ring []Rejection
	next int
	full bool
}

// NewRejections keeps the last size rejections.
func NewRejections(size int) *Rejections { return &Rejections{ring: make([]Rejection, size)} }

// add keeps one refused request. The log is for people to read: reason
// comes masked (provider.Provider.MaskRefused), and credential headers are masked here.
func (l *Rejections) add(p *provider.Provider, req *verifiers.Request, reason string) {
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

// Purge drops the rejections received before cutoff (SPEC 11 retention)
// and returns how many.
func (l *Rejections) Purge(cutoff time.Time) int {
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

// List returns up to limit rejections of name ("" for all), newest first.
func (l *Rejections) List(name string, limit int) []Rejection {
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
		if name == "" || rj.Provider == name {
			out = append(out, rj)
		}
	}
	return out
}
