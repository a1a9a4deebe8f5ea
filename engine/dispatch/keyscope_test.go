package dispatch

import (
	"net/http"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hookrelay/hookrelay/engine/config"
)

// deliveredN lists the n of provider's events dest answered 2xx, in order.
func deliveredN(t *testing.T, tl *testLane, provider string) []int {
	var out []int
	for _, ev := range tl.delivered(t) {
		if ev["provider"] == provider {
			out = append(out, int(ev["data"].(map[string]any)["n"].(float64)))
		}
	}
	return out
}

// TestSequenceScopedByProvider: Avida's ON-9 #1 is delivered; Nordiska's
// ON-9 #2 must then wait for Nordiska's #1 (its reorder window), not go at
// once as if Avida's #1 were its own (SPEC 5.3 records scoped by provider).
func TestSequenceScopedByProvider(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tl := startLane(t, config.RetryConfig{}, map[string]time.Duration{"avida": time.Minute, "nordiska": time.Minute},
			func(http.Header, *http.Request) int { return http.StatusOK })
		tl.send(t, "avida", "ON-9", "t", 1, 1)
		synctest.Wait()
		if got := deliveredN(t, tl, "avida"); len(got) != 1 {
			t.Fatalf("avida delivered %v, want its #1", got)
		}

		tl.send(t, "nordiska", "ON-9", "t", 2, 2)
		synctest.Wait()
		if got := deliveredN(t, tl, "nordiska"); len(got) > 0 {
			t.Fatalf("nordiska's #2 went at once (delivered %v): avida's #1 counted as nordiska's", got)
		}
		if at, ok := tl.due("dest", "nordiska", "ON-9"); !ok || !at.After(time.Now()) {
			t.Fatalf("nordiska's #2 neither sent nor waiting for its #1: due %v %v", at, ok)
		}
		tl.send(t, "nordiska", "ON-9", "t", 1, 1)
		synctest.Wait()
		if got := deliveredN(t, tl, "nordiska"); len(got) != 2 || got[0] != 1 || got[1] != 2 {
			t.Errorf("nordiska delivered %v, want [1 2]", got)
		}
	})
}
