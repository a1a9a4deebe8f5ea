package dispatch

import (
	"context"
	"fmt"
	"testing"
)

// TestHeldKeysShowsTheOldest holds more keys than the admin shows: the
// ones shown are the oldest blocked events, oldest first, not whichever the
// map gave first.
func TestHeldKeysShowsTheOldest(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	l := newLane(ctx, cancel, nil, &Destination{Name: "dest", ordered: true, concurrency: 1})
	const keys, limit = 150, 100
	for i := range keys {
		id := fmt.Sprintf("01EVENT%04d", i)
		k := fmt.Sprintf("k%d", i)
		l.keys[k] = &keyQueue{key: k, provider: "p", eventKey: k, items: []item{{eventID: id}}, held: true}
	}
	got := l.heldKeys(limit)
	if len(got) != limit {
		t.Fatalf("heldKeys(%d) gave %d keys", limit, len(got))
	}
	for i, h := range got {
		if want := fmt.Sprintf("01EVENT%04d", i); h.EventID != want {
			t.Fatalf("held key %d is blocked by %s, want %s (the %d oldest, oldest first)", i, h.EventID, want, limit)
		}
	}
}
