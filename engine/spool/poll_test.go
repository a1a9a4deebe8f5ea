package spool

import (
	"context"
	"fmt"
	"testing"
	"time"
)

func pollKeys(t *testing.T, b *Bolt, provider string) map[string]PollState {
	t.Helper()
	out := map[string]PollState{}
	must(t, b.PollKeys(provider, func(key string, st *PollState) error {
		out[key] = *st
		return nil
	}))
	return out
}

func TestPollStateTrackSaveReopen(t *testing.T) {
	ctx := context.Background()
	b := mustOpen(t)
	mustTrack(t, b, TrackedKey{"resurs", "A", false}, TrackedKey{"resurs", "B", false}, TrackedKey{"kompar", "A", false})
	next := time.Now().Add(time.Minute).UTC().Truncate(time.Millisecond)
	must(t, b.PollSave(ctx, "resurs", "A", &PollState{Last: "sum1", LastType: "application.signed", NextAt: next, Errors: 2}))
	// Tracking a known key again keeps its state.
	if st := mustTrack(t, b, TrackedKey{"resurs", "A", false}); st[0].Last != "sum1" || st[0].Final {
		t.Fatalf("track of a known key: %+v", st)
	}
	got := pollKeys(t, b, "resurs")
	if len(got) != 2 || got["A"].Last != "sum1" || got["A"].Errors != 2 || !got["A"].NextAt.Equal(next) || got["A"].Since.IsZero() {
		t.Fatalf("resurs keys: %+v", got)
	}
	if k := pollKeys(t, b, "kompar"); len(k) != 1 {
		t.Fatalf("kompar keys: %+v", k)
	}

	// Final sticks: by track, and a later save without it does not undo it.
	mustTrack(t, b, TrackedKey{"resurs", "B", true})
	must(t, b.PollSave(ctx, "resurs", "B", &PollState{Last: "sum2"}))
	if st := mustTrack(t, b, TrackedKey{"resurs", "B", false}); !st[0].Final || st[0].Last != "sum2" {
		t.Fatalf("final did not stick: %+v", st)
	}
	b = reopen(t, b)
	got = pollKeys(t, b, "resurs")
	if _, ok := got["B"]; ok || len(got) != 1 || got["A"].Last != "sum1" {
		t.Fatalf("after final and reopen: %+v", got)
	}
	if k := pollKeys(t, b, "nobody"); len(k) != 0 {
		t.Fatalf("unknown provider: %+v", k)
	}
}

func TestPollKeysChunks(t *testing.T) {
	b := mustOpen(t)
	var keys []TrackedKey
	for i := range 2*pollChunk + 10 {
		keys = append(keys, TrackedKey{"p", fmt.Sprintf("k%05d", i), i%3 == 0})
	}
	mustTrack(t, b, keys...)
	n, prev := 0, ""
	must(t, b.PollKeys("p", func(key string, _ *PollState) error {
		if key <= prev {
			t.Fatalf("key %s after %s", key, prev)
		}
		prev = key
		n++
		return nil
	}))
	if want := len(keys) - (len(keys)+2)/3; n != want {
		t.Fatalf("visited %d keys, want %d", n, want)
	}
}

func mustTrack(t *testing.T, b *Bolt, keys ...TrackedKey) []PollState {
	t.Helper()
	st, err := b.PollTrack(context.Background(), keys)
	must(t, err)
	if len(st) != len(keys) {
		t.Fatalf("%d states for %d keys", len(st), len(keys))
	}
	return st
}

// TestPollSaveUntrackedKey: a poll that was under way when its key was
// erased saves its answer after the erasure; the key must stay erased.
func TestPollSaveUntrackedKey(t *testing.T) {
	ctx := context.Background()
	b := mustOpen(t)
	mustTrack(t, b, TrackedKey{"resurs", "A", false})
	_, err := b.EraseKey(ctx, "resurs", "A")
	must(t, err)
	must(t, b.PollSave(ctx, "resurs", "A", &PollState{Last: "sum1"}))
	must(t, b.PollSave(ctx, "resurs", "never-tracked", &PollState{Last: "sum2"}))
	if got := pollKeys(t, b, "resurs"); len(got) != 0 {
		t.Fatalf("keys after saving untracked ones: %+v", got)
	}
}
