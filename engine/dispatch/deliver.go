package dispatch

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/hookrelay/hookrelay/engine/outbound"
	"github.com/hookrelay/hookrelay/engine/spool"
)

// result tells a worker what to do with its key after one delivery.
type result struct {
	next int
	at   time.Time
	dead bool // the delivery just became dead
	// ok: the attempt succeeded. down: it failed the way a destination that
	// is down fails (retryable, no Retry-After, not 429). sent is when the
	// attempt started. For lane.track.
	ok, down bool
	sent     time.Time
}

const (
	popHead = iota // delivered, skipped, or gone: the key moves on
	retryAt        // try the head again at `at`
	holdKey        // dead and the destination holds: the key waits for an operator
)

// spoolFailed logs a spool read or write that failed and tries the key
// again in a second: the spool, not the delivery, is what failed.
func (d *Dispatcher) spoolFailed(msg, dest, eventID string, err error) result {
	d.log.Error(msg, "destination", dest, "event_id", eventID, "error", err)
	return result{next: retryAt, at: time.Now().Add(time.Second)}
}

// deliver makes at most one attempt of the delivery of it to l's
// destination and records it. last is the highest sequence released for the
// key: a sequenced event beyond last+1 waits for the gap to fill, up to its
// provider's reorder window.
func (d *Dispatcher) deliver(l *lane, it item, last int64) result {
	l.mu.Lock()
	dest, limiter, slots, outage := l.dest, l.limiter, l.slots, l.outage
	l.mu.Unlock()
	eventID := it.eventID
	dl, err := d.spool.Delivery(dest.Name, eventID)
	if errors.Is(err, spool.ErrNotFound) {
		return result{next: popHead}
	}
	if err != nil {
		return d.spoolFailed("spool read failed", dest.Name, eventID, err)
	}
	switch {
	case dl.Status.Final():
		return result{next: popHead}
	case dl.Status == spool.Dead && dest.hold:
		return result{next: holdKey}
	case dl.Status == spool.Dead:
		return result{next: popHead}
	case time.Until(dl.NextAt) > 0 && !outage.cut(dl):
		return result{next: retryAt, at: dl.NextAt}
	}
	ev, msg, err := d.event(eventID)
	if err != nil {
		return d.spoolFailed("spool read failed", dest.Name, eventID, err)
	}
	if it.sequence > last+1 && dest.ordered {
		if wait := ev.ReceivedAt.Add(d.reorderWindow(ev.Provider)); time.Until(wait) > 0 {
			return result{next: retryAt, at: wait}
		}
		d.log.Warn("sequence gap: sending without the missing events", "provider", ev.Provider, "key", ev.Key,
			"destination", dest.Name, "event_id", eventID, "sequence", it.sequence, "expected", last+1)
		d.m.SequenceGap(dest.Name)
	}
	if limiter != nil {
		if err := limiter.Wait(l.ctx); err != nil {
			return result{next: retryAt}
		}
	}

	select {
	case slots <- struct{}{}:
	case <-l.ctx.Done():
		return result{next: retryAt}
	}
	att, retryAfter, sendErr := send(d.client, dest, msg, dl.Tries()+1)
	<-slots
	dl.Attempts = append(dl.Attempts, att)
	out := dest.retry.Classify(att.Status, sendErr)
	if out != outbound.Success {
		l.noteFailure(eventID, att)
	}
	res := result{next: popHead, ok: out == outbound.Success, sent: att.At,
		down: out == outbound.Retry && retryAfter == 0 && att.Status != http.StatusTooManyRequests}
	metric := "success"
	var nextAt time.Time
	again := false
	if out == outbound.Retry {
		nextAt, again = dest.retry.Next(dl.Tries(), born(dl, ev), time.Now(), retryAfter)
	}
	switch {
	case out == outbound.Success:
		dl.Status, dl.NextAt = spool.Delivered, time.Time{}
	case again:
		dl.NextAt = nextAt
		res.next, res.at, metric = retryAt, dl.NextAt, "retry"
	default:
		dl.Status, dl.NextAt, metric = spool.Dead, time.Time{}, "dead"
		res.dead = true
		if dest.hold {
			res.next = holdKey
		}
	}
	// The key may move on only once the outcome is on disk: otherwise a crash
	// could send the next event of the key while this one is still pending.
	if err := d.spool.Update(spool.Fenced(context.Background()), dl); err != nil {
		return d.spoolFailed("spool update failed", dest.Name, eventID, err)
	}
	d.m.Delivered(dest.Name, metric, time.Duration(att.DurationMS)*time.Millisecond)
	lvl := slog.LevelInfo
	if metric == "dead" {
		lvl = slog.LevelWarn
	}
	// Enabled first, as ingest does: the attributes and the message cost
	// allocations even when the level is off.
	if metric != "retry" && d.log.Enabled(context.Background(), lvl) {
		// The attempt as X-Hookrelay-Attempt numbered it: counted since the
		// last operator retry, which the spool's attempts list spans.
		// Typed attributes: a delivery's line formats without boxing.
		attrs := make([]slog.Attr, 0, 8)
		attrs = append(attrs, slog.String("event_id", eventID), slog.String("provider", ev.Provider), slog.String("key", ev.Key),
			slog.String("destination", dest.Name), slog.Int("attempt", dl.Tries()), slog.Int("status", att.Status))
		if dl.AttemptsBefore > 0 {
			attrs = append(attrs, slog.Int("attempts_before_retry", dl.AttemptsBefore))
		}
		if att.Error != "" {
			attrs = append(attrs, slog.String("error", att.Error))
		}
		d.log.LogAttrs(context.Background(), lvl, "delivery "+dl.Status.String(), attrs...)
	}
	return res
}

// born is when dl's age (retry.max_age) starts: when its event was received,
// or, after an operator's retry, when the first attempt after it was made,
// since the retry starts the attempt count again and so the age too. Both
// come from what every spool already stores, so deliveries written before
// max_age existed age the same way.
func born(dl *spool.Delivery, ev *spool.Event) time.Time {
	if dl.AttemptsBefore > 0 && dl.AttemptsBefore < len(dl.Attempts) {
		return dl.Attempts[dl.AttemptsBefore].At
	}
	return ev.ReceivedAt
}

// outageSpan is a run of failed attempts to a destination, from the first
// to the success that ended it (see lane.track).
type outageSpan struct{ from, to time.Time }

// cut says whether dl's backoff is moot: its last attempt failed during the
// outage, and the destination has answered since. A 429 is the destination
// pacing us, not an outage: its wait stands.
func (o outageSpan) cut(dl *spool.Delivery) bool {
	n := len(dl.Attempts)
	return n > 0 && o.holds(dl.Attempts[n-1].At) && dl.Attempts[n-1].Status != http.StatusTooManyRequests
}

// holds says whether an attempt that started at t started during the outage.
func (o outageSpan) holds(t time.Time) bool {
	return !o.from.IsZero() && !t.Before(o.from) && t.Before(o.to)
}
