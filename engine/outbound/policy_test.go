package outbound

import (
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/engine/config"
)

// TestRetryDefaults: the policy a destination gets when its retry block is
// left out rides out a long outage (SPEC 2): no count limit, 72h of age, from
// 1s up to 1h between tries with full jitter.
func TestRetryDefaults(t *testing.T) {
	p, err := NewPolicy(config.RetryConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if p.maxAge != 72*time.Hour || p.maxAttempts != 0 || p.initial != time.Second || p.max != time.Hour ||
		p.multiplier != 2 || p.jitter != "full" {
		t.Errorf("defaults: max_age %v, max_attempts %d, initial %v, max %v, multiplier %v, jitter %s",
			p.maxAge, p.maxAttempts, p.initial, p.max, p.multiplier, p.jitter)
	}
	zero := time.Duration(0)
	if p, _ := NewPolicy(config.RetryConfig{MaxAge: &zero}); p.maxAge != 0 {
		t.Errorf("max_age: 0 gave %v, want no limit", p.maxAge)
	}
	for _, c := range []config.RetryConfig{{MaxAttempts: -1}, {MaxAge: ptr(-time.Second)}} {
		if _, err := NewPolicy(c); err == nil {
			t.Errorf("%+v: no error", c)
		}
	}

	// The last try before max_age is made at max_age, and a failure at or
	// after it is the end.
	p.jitter = "none"
	born := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if at, ok := p.Next(40, born, born.Add(71*time.Hour+30*time.Minute), 0); !ok || !at.Equal(born.Add(72*time.Hour)) {
		t.Errorf("30 min before max_age: next %v %v, want at max_age", at, ok)
	}
	if _, ok := p.Next(41, born, born.Add(72*time.Hour), 0); ok {
		t.Error("a failure at max_age is retried")
	}
	if _, ok := p.Next(1000, born, born.Add(time.Minute), 0); !ok {
		t.Error("max_attempts 0 limits the count")
	}
}

func ptr[T any](v T) *T { return &v }

// TestBackoff: the wait doubles from Initial up to Max; equal jitter never
// waits less than half of it, full jitter anywhere up to it.
func TestBackoff(t *testing.T) {
	b := Backoff{Initial: time.Second, Max: 5 * time.Second, Multiplier: 2, Jitter: "none"}
	for n, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 4: 5 * time.Second, 60: 5 * time.Second} {
		if got := b.Delay(n); got != want {
			t.Errorf("failure %d: %v, want %v", n, got, want)
		}
	}
	b.Jitter = "equal"
	for range 100 {
		if d := b.Delay(3); d < 2*time.Second || d > 4*time.Second {
			t.Fatalf("equal jitter of 4s: %v", d)
		}
	}
	b.Jitter = "full"
	for range 100 {
		if d := b.Delay(3); d < 0 || d > 4*time.Second {
			t.Fatalf("full jitter of 4s: %v", d)
		}
	}
}
