package engine

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/hookrelay/hookrelay/engine/provider"
	"github.com/hookrelay/hookrelay/engine/spool"
)

// TestMigrateCarriesSequence: a key with sequence numbers whose event 1
// was delivered long ago (outside every dedup window) and event 2 is
// pending arrives with event 1 as delivered, so that the target's last
// released sequence is 1 and event 2 does not wait for a gap (SPEC 5.3);
// a delivered event without a pending one behind it stays behind, and
// quarantined requests, paused destinations and attempts come along.
func TestMigrateCarriesSequence(t *testing.T) {
	dir := t.TempDir()
	src, err := spool.Open(filepath.Join(dir, "src.db"), spool.Options{})
	must(t, err)
	defer func() { _ = src.Close() }()
	dst, err := spool.Open(filepath.Join(dir, "dst.db"), spool.Options{})
	must(t, err)
	defer func() { _ = dst.Close() }()
	ctx := context.Background()
	old := time.Now().Add(-200 * time.Hour)
	ev := func(at time.Time, key string, seq int64) string {
		id := ulid.MustNew(ulid.Timestamp(at), ulid.DefaultEntropy()).String()
		_, err := src.Append(ctx, &spool.Event{ID: id, Provider: "bank", Type: "t", Key: key, Sequence: seq, IdempotencyID: id,
			ReceivedAt: at, Envelope: json.RawMessage(`{}`), Destinations: []string{"crm"}}, 0)
		must(t, err)
		return id
	}
	first, second := ev(old, "app-1", 1), ev(old.Add(time.Second), "app-1", 2)
	gone := ev(old, "app-2", 1)
	for _, id := range []string{first, gone} {
		must(t, src.Update(ctx, &spool.Delivery{EventID: id, Destination: "crm", Status: spool.Delivered,
			Attempts: []spool.Attempt{{At: old, Status: 200}}}))
	}
	must(t, src.Update(ctx, &spool.Delivery{EventID: second, Destination: "crm", Status: spool.Pending,
		Attempts: []spool.Attempt{{At: old, Status: 503}, {At: old, Status: 503}}, NextAt: time.Now()}))
	must(t, src.Quarantine(ctx, &spool.Quarantined{ID: ulid.Make().String(), Provider: "bank", Reason: "no route", Body: []byte("{}")}))
	must(t, src.SetPaused("crm", true))
	_, err = src.PollTrack(ctx, []spool.TrackedKey{{Provider: "bank", Key: "app-1"}})
	must(t, err)
	must(t, src.PollSave(ctx, "bank", "app-1", &spool.PollState{LastType: "granted"}))

	cfg := &Config{Providers: []*Provider{{Provider: &provider.Provider{Pipeline: provider.Pipeline{Name: "bank"}}}}}
	n, err := copySpool(ctx, cfg, src, dst)
	if err != nil || n.Events != 2 || n.Pending != 1 || n.Delivered != 1 || n.Quarantined != 1 || n.Paused != 1 || n.PollStates != 1 {
		t.Fatalf("copy: %+v, %v; want 2 events (1 pending, 1 delivered), 1 quarantined, 1 paused, 1 poll state", n, err)
	}
	if last, err := dst.LastSequence("crm", "bank", "app-1"); err != nil || last != 1 {
		t.Errorf("the target's last sequence of app-1: %d, %v; want 1", last, err)
	}
	if _, err := dst.Event(gone); err == nil {
		t.Errorf("the delivered event of app-2, with nothing pending behind it, was copied")
	}
	d, err := dst.Delivery("crm", second)
	if err != nil || d.Status != spool.Pending || d.Tries() != 2 {
		t.Errorf("the pending delivery: %+v, %v; want pending after 2 attempts", d, err)
	}
	if p, _ := dst.Paused(); !p["crm"] {
		t.Errorf("paused on the target: %v", p)
	}
	polled := map[string]string{}
	must(t, dst.PollKeys("bank", func(key string, st *spool.PollState) error { polled[key] = st.LastType; return nil }))
	if polled["app-1"] != "granted" {
		t.Errorf("the target's poll states: %v", polled)
	}
	n, err = copySpool(ctx, cfg, src, dst)
	if err != nil || n.Events != 0 || n.Present != 2 || n.Quarantined != 0 {
		t.Errorf("a second copy: %+v, %v; want nothing copied", n, err)
	}
}
