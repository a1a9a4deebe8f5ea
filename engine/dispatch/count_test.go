package dispatch

import (
	"context"
	"testing"

	"github.com/oklog/ulid/v2"

	"github.com/hookrelay/hookrelay/engine/spool"
)

// TestCountByPartition: a shared spool publishes each partition's queues
// from Count, so that every relay's admin API shows every partition; the
// counts by partition add up to the lane's own, and a dropped partition's
// dead deliveries leave the lane's count with it, those already passed by
// a destination that does not hold included.
func TestCountByPartition(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	d := &Dispatcher{lanes: map[string]*lane{}}
	hold := newLane(ctx, cancel, d, &Destination{Name: "hold", ordered: true, concurrency: 1, hold: true})
	pass := newLane(ctx, cancel, d, &Destination{Name: "pass", ordered: true, concurrency: 1})
	d.lanes["hold"], d.lanes["pass"] = hold, pass
	part := func(_, key string) uint32 { return map[string]uint32{"a": 0, "b": 1, "c": 1}[key] }
	queue := func(dest, key string, status spool.Status) ulid.ULID {
		id := ulid.Make()
		d.Queue(dest, &spool.QueuedDelivery{EventID: id, Provider: "p", Key: key, Status: status})
		return id
	}
	queue("hold", "a", spool.Pending)
	queue("hold", "a", spool.Pending)
	blocker := queue("hold", "b", spool.Dead)
	queue("hold", "b", spool.Pending)
	// A dead delivery the worker of a destination that does not hold has
	// passed: counted dead, no longer queued.
	pass.mu.Lock()
	pass.addDead("p", "c", 1)
	pass.mu.Unlock()

	got := d.Count(part)
	if st := got[0]["hold"]; st == nil || st.Pending != 2 || st.Dead != 0 || st.HeldKeys != 0 || st.Oldest.IsZero() {
		t.Errorf("partition 0 to hold: %+v, want 2 pending", st)
	}
	st := got[1]["hold"]
	if st == nil || st.Pending != 1 || st.Dead != 1 || st.HeldKeys != 1 || len(st.Held) != 1 {
		t.Fatalf("partition 1 to hold: %+v, want 1 pending, 1 dead, key b held", st)
	}
	if h := st.Held[0]; h.Key != "b" || h.EventID != blocker.String() || h.Waiting != 1 {
		t.Errorf("held %+v, want b blocked by %s with 1 waiting", h, blocker)
	}
	if st := got[1]["pass"]; st == nil || st.Dead != 1 || st.Pending != 0 {
		t.Errorf("partition 1 to pass: %+v, want 1 dead", st)
	}
	for _, name := range []string{"hold", "pass"} {
		sum := spool.QueueStats{}
		for _, dests := range got {
			if st := dests[name]; st != nil {
				sum.Pending, sum.Dead, sum.HeldKeys = sum.Pending+st.Pending, sum.Dead+st.Dead, sum.HeldKeys+st.HeldKeys
			}
		}
		own, _ := d.Stats(name)
		if sum.Pending != own.Pending || sum.Dead != own.Dead || sum.HeldKeys != own.HeldKeys {
			t.Errorf("%s: partitions add up to %+v, the lane says %+v", name, sum, own)
		}
	}

	// Partition 1 goes to another relay: its counts leave with it.
	d.Drop(func(_, key string) bool { return part("", key) == 1 })
	for _, name := range []string{"hold", "pass"} {
		if own, _ := d.Stats(name); own.Dead != 0 || own.HeldKeys != 0 {
			t.Errorf("%s after the drop: %+v, want nothing dead or held", name, own)
		}
	}
	if got := d.Count(part); got[1] != nil || got[0]["hold"].Pending != 2 {
		t.Errorf("after the drop: %v, want partition 0's 2 pending only", got)
	}
}
