package engine

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// seqProvider maps body.seq to the event's sequence (SPEC 5.3).
func seqProvider(window string) string {
	return strings.Replace(plainProvider, "  type: body.type", "  type: body.type\n  sequence: body.seq ?? 0", 1) +
		"reorder_window: " + window + "\n"
}

func seqBody(key string, seq int) string {
	return fmt.Sprintf(`{"id":"%s-%d","key":%q,"seq":%d,"n":%d}`, key, seq, key, seq, seq)
}

func deliveredSeqs(t *testing.T, rec *recorder, key string) []float64 {
	var out []float64
	for _, ev := range rec.delivered(t) {
		if ev["key"] == key {
			out = append(out, ev["sequence"].(float64))
		}
	}
	return out
}

func TestSequenceOrder(t *testing.T) {
	// The destination is closed until every event is in, so the relay has to
	// reorder what it holds: arrival 3, 1, 4, 2 is sent as 1, 2, 3, 4.
	open := make(chan struct{})
	rec := newRecorder(t, func(int, *http.Request) int {
		<-open
		return http.StatusOK
	})
	tr := startRelay(t, relayYAML(rec.srv.URL, "    timeout: 30s\n"), map[string]string{"plain": seqProvider("10s")})
	for _, seq := range []int{3, 1, 4, 2} {
		if resp := tr.post("/in/plain", seqBody("k", seq), authPlain); resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	close(open)
	waitFor(t, 10*time.Second, "four deliveries", func() bool { return len(rec.delivered(t)) == 4 })
	if got := deliveredSeqs(t, rec, "k"); fmt.Sprint(got) != "[1 2 3 4]" && fmt.Sprint(got) != "[3 1 2 4]" {
		// 3 may go first only when a worker took it before 1 was stored
		// and sent it at once; it cannot: 3 waits for 1 and 2.
		t.Errorf("delivered sequences %v", got)
	}
}

// TestSequenceGapWaitsThenGoes runs on the bubble's clock: 3 waits for the
// missing 2 exactly its reorder window, not a nanosecond less, and a gap
// that fills in time costs no wait at all once it fills.
func TestSequenceGapWaitsThenGoes(t *testing.T) { inBubble(t, testSequenceGapWaitsThenGoes) }

func testSequenceGapWaitsThenGoes(t *testing.T) {
	const window = 400 * time.Millisecond
	rec := newRecorder(t, nil)
	tr := startRelay(t, relayYAML(rec.srv.URL, ""), map[string]string{"plain": seqProvider(window.String())})
	tr.post("/in/plain", seqBody("k", 1), authPlain)
	synctest.Wait()
	if n := len(rec.delivered(t)); n != 1 {
		t.Fatalf("%d deliveries of 1, want 1 at once", n)
	}

	start := time.Now()
	tr.post("/in/plain", seqBody("k", 3), authPlain) // 2 is missing
	advance(window - time.Nanosecond)
	if n := len(rec.delivered(t)); n != 1 {
		t.Fatalf("3 went %v after it came, before its reorder window passed (%d deliveries)", time.Since(start), n)
	}
	advance(time.Nanosecond)
	if n := len(rec.delivered(t)); n != 2 {
		t.Fatalf("%d deliveries when 3's window of %v passed, want 2", n, window)
	}
	if gaps := testutil.ToFloat64(tr.m.gaps.WithLabelValues("dest")); gaps != 1 {
		t.Errorf("gap counter %v, want 1", gaps)
	}

	// A gap that fills within the window costs no wait beyond the fill.
	tr.post("/in/plain", seqBody("k", 5), authPlain)
	advance(50 * time.Millisecond)
	if n := len(rec.delivered(t)); n != 2 {
		t.Fatalf("5 went before 4 or its window (%d deliveries)", n)
	}
	tr.post("/in/plain", seqBody("k", 4), authPlain)
	synctest.Wait() // no time passes
	if got := deliveredSeqs(t, rec, "k"); fmt.Sprint(got) != "[1 3 4 5]" {
		t.Errorf("delivered %v once 4 came, want [1 3 4 5] at once", got)
	}
	if gaps := testutil.ToFloat64(tr.m.gaps.WithLabelValues("dest")); gaps != 1 {
		t.Errorf("gap counter %v, want still 1", gaps)
	}
}

func TestSequenceSurvivesRestart(t *testing.T) {
	rec := newRecorder(t, nil)
	tr := startRelay(t, relayYAML(rec.srv.URL, ""), map[string]string{"plain": seqProvider("10s")})
	tr.post("/in/plain", seqBody("k", 1), authPlain)
	tr.post("/in/plain", seqBody("k", 2), authPlain)
	waitFor(t, 5*time.Second, "1 and 2", func() bool { return len(rec.delivered(t)) == 2 })
	tr = tr.restart()
	start := time.Now()
	tr.post("/in/plain", seqBody("k", 3), authPlain)
	waitFor(t, 5*time.Second, "3 without waiting for the window", func() bool { return len(rec.delivered(t)) == 3 })
	if waited := time.Since(start); waited > 5*time.Second {
		t.Errorf("3 waited %v after a restart: the relay forgot 2 was delivered", waited)
	}
	// A fresh key still starts at 1: its 2 waits for 1.
	tr.post("/in/plain", seqBody("j", 2), authPlain)
	tr.post("/in/plain", seqBody("j", 1), authPlain)
	waitFor(t, 5*time.Second, "j's two", func() bool { return len(deliveredSeqs(t, rec, "j")) == 2 })
	if got := deliveredSeqs(t, rec, "j"); fmt.Sprint(got) != "[1 2]" {
		t.Errorf("key j delivered %v", got)
	}
}
