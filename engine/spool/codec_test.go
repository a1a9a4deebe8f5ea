package spool

import (
	"encoding/binary"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	bolt "go.etcd.io/bbolt"
)

func TestEventCodec(t *testing.T) {
	ev := event(time.Now(), "acme:1", "broker", "alerts")
	ev.Sequence = 7
	ev.Raw = []byte("not json \x00\xff")
	b, err := encodeEvent(ev)
	must(t, err)
	got, err := decodeEvent(b)
	must(t, err)
	if !reflect.DeepEqual(got, ev) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, ev)
	}
	if at, err := eventReceivedAt(b); err != nil || !at.Equal(ev.ReceivedAt) {
		t.Errorf("eventReceivedAt = %v, %v", at, err)
	}
	for _, bad := range [][]byte{nil, {}, {'{'}, {eventFormat}, {eventFormat, 200}, b[:len(b)-len(ev.Raw)-len(ev.Envelope)-1]} {
		if _, err := decodeEvent(bad); err == nil {
			t.Errorf("decoded %q", bad)
		}
	}
}

// TestEventCodecReadsJSON: spools written before the binary header hold
// format 0x01, a JSON header, which must read the same.
func TestEventCodecReadsJSON(t *testing.T) {
	want := event(time.Now(), "acme:1", "broker", "alerts")
	want.Sequence = 3
	b := legacyEvent(t, want)
	got, err := decodeEvent(b)
	must(t, err)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("from format 0x01:\n got %+v\nwant %+v", got, want)
	}
	if at, err := eventReceivedAt(b); err != nil || !at.Equal(want.ReceivedAt) {
		t.Errorf("eventReceivedAt of format 0x01 = %v, %v", at, err)
	}
}

// legacyEvent is ev as format 0x01 stored it.
func legacyEvent(t testing.TB, ev *Event) []byte {
	meta, err := json.Marshal(eventMeta{ev.ID, ev.Provider, ev.Type, ev.Key, ev.Sequence, ev.IdempotencyID, ev.ReceivedAt, ev.Destinations})
	if err != nil {
		t.Fatal(err)
	}
	b := append([]byte{eventFormatJSON}, binary.AppendUvarint(nil, uint64(len(meta)))...)
	b = append(append(b, meta...), binary.AppendUvarint(nil, uint64(len(ev.Envelope)))...)
	return append(append(b, ev.Envelope...), ev.Raw...)
}

func FuzzDecodeEvent(f *testing.F) {
	ev := event(time.Now(), "acme:1", "broker")
	b, _ := encodeEvent(ev)
	f.Add(b)
	f.Add(legacyEvent(f, ev))
	f.Add([]byte{eventFormat, 1, '{'})
	f.Add([]byte{eventFormatJSON, 1, '{'})
	f.Fuzz(func(t *testing.T, v []byte) {
		_, _ = decodeEvent(v)
		_, _ = eventReceivedAt(v)
	})
}

// deliveryFixture has every field set, times in UTC as the decoder returns
// them.
func deliveryFixture() *Delivery {
	at := time.Date(2026, 12, 6, 5, 0, 0, 123456789, time.UTC)
	return &Delivery{
		EventID: "01JEXAMPLE0000000000000000", Destination: "broker", Key: "app-Ω-42", Seq: 1 << 40, Sequence: 17,
		Status: Dead, AttemptsBefore: 1, NextAt: at.Add(time.Minute),
		Attempts: []Attempt{
			{At: at, Status: 503, DurationMS: 12, Response: `{"error":"busy"}`},
			{At: at.Add(time.Second), Error: "dial tcp: connection refused", DurationMS: 0},
		},
	}
}

func TestDeliveryCodec(t *testing.T) {
	for _, d := range []*Delivery{
		deliveryFixture(),
		{EventID: "E", Destination: "d", Status: Pending, Attempts: []Attempt{}},
	} {
		b := encodeDelivery(d)
		var got Delivery
		must(t, decodeDelivery(b, &got))
		if !reflect.DeepEqual(&got, d) {
			t.Errorf("round trip:\n got %+v\nwant %+v", got, *d)
		}
		if st, err := deliveryStatus(b); err != nil || st != d.Status {
			t.Errorf("deliveryStatus = %v, %v; want %v", st, err, d.Status)
		}
		// Every cut short, and anything after the end, is an error.
		for n := range len(b) {
			if err := decodeDelivery(b[:n], &got); err == nil {
				t.Errorf("decoded the first %d of %d bytes", n, len(b))
			}
		}
		if err := decodeDelivery(append(b[:len(b):len(b)], 0), &got); err == nil {
			t.Error("decoded a trailing byte")
		}
	}
}

// TestDeliveryCodecReadsJSON: spools written before the binary form hold
// JSON deliveries, which must read the same.
func TestDeliveryCodecReadsJSON(t *testing.T) {
	want := deliveryFixture()
	js, err := json.Marshal(want)
	must(t, err)
	var got Delivery
	must(t, decodeDelivery(js, &got))
	if !reflect.DeepEqual(&got, want) {
		t.Errorf("from JSON:\n got %+v\nwant %+v", got, *want)
	}
	if st, err := deliveryStatus(js); err != nil || st != want.Status {
		t.Errorf("deliveryStatus of JSON = %v, %v", st, err)
	}
	for _, bad := range [][]byte{nil, {}, {0x01}, {deliveryFormat}, []byte(`{"status":`)} {
		if err := decodeDelivery(bad, &got); err == nil {
			t.Errorf("decoded %q", bad)
		}
	}
}

func FuzzDecodeDelivery(f *testing.F) {
	f.Add(encodeDelivery(deliveryFixture()))
	js, _ := json.Marshal(deliveryFixture())
	f.Add(js)
	f.Add([]byte{deliveryFormat, 0, 0, 0, 0, 0, 1, 0, 0, 255, 255, 255, 255, 15})
	f.Fuzz(func(t *testing.T, v []byte) {
		var d Delivery
		if decodeDelivery(v, &d) != nil || v[0] != deliveryFormat || d.Status == "" {
			return
		}
		// What decodes re-encodes to a delivery that decodes the same.
		var again Delivery
		if err := decodeDelivery(encodeDelivery(&d), &again); err != nil || !reflect.DeepEqual(again, d) {
			t.Fatalf("re-encoded %+v: %+v, %v", d, again, err)
		}
	})
}

// BenchmarkDeliveryDecode compares the binary form with the JSON it
// replaced, in one run.
func BenchmarkDeliveryDecode(b *testing.B) {
	d := deliveryFixture()
	js, _ := json.Marshal(d)
	bin := encodeDelivery(d)
	b.Run("json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var got Delivery
			if err := json.Unmarshal(js, &got); err != nil {
				b.Fatal(err)
			}
			_, _ = json.Marshal(&got)
		}
	})
	b.Run("binary", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var got Delivery
			if err := decodeDelivery(bin, &got); err != nil {
				b.Fatal(err)
			}
			_ = encodeDelivery(&got)
		}
	})
}

// TestSpoolWrittenBefore: a spool holding the record forms written before
// (JSON deliveries, format 0x01 events, bare-ULID queue entries) is read,
// delivered from, listed and purged as a new one, and each record takes the
// new form when it is next written.
func TestSpoolWrittenBefore(t *testing.T) {
	b := mustOpen(t)
	old := time.Now().Add(-48 * time.Hour)
	pending, delivered := event(old, "p", "ledger"), event(old, "d", "ledger")
	err := b.db.Update(func(tx *bolt.Tx) error {
		q, err := tx.Bucket(bucketQueue).CreateBucketIfNotExists([]byte("ledger"))
		if err != nil {
			return err
		}
		for i, ev := range []*Event{pending, delivered} {
			id := ulid.MustParse(ev.ID)
			d := Delivery{EventID: ev.ID, Destination: "ledger", Key: ev.Key, Seq: uint64(i + 1), Status: Pending}
			if ev == delivered {
				d.Status = Delivered
			}
			js, err := json.Marshal(&d)
			if err != nil {
				return err
			}
			if err := tx.Bucket(bucketEvents).Put(id[:], legacyEvent(t, ev)); err != nil {
				return err
			}
			if err := tx.Bucket(bucketDeliveries).Put(deliveryKey(id[:], "ledger"), js); err != nil {
				return err
			}
			if ev == pending {
				if err := q.Put(u64(d.Seq), id[:]); err != nil {
					return err
				}
			}
		}
		return nil
	})
	must(t, err)

	var queuedIDs []string
	must(t, b.Pending("ledger", func(q *QueuedDelivery) error {
		queuedIDs = append(queuedIDs, q.EventID.String())
		if q.Key != pending.Key || q.Status != Pending {
			t.Errorf("queued %+v", q)
		}
		return nil
	}))
	if !reflect.DeepEqual(queuedIDs, []string{pending.ID}) {
		t.Errorf("Pending = %v, want [%s]", queuedIDs, pending.ID)
	}
	ev, err := b.Event(pending.ID)
	must(t, err)
	if !reflect.DeepEqual(ev, pending) {
		t.Errorf("Event:\n got %+v\nwant %+v", ev, pending)
	}
	d, err := b.Delivery("ledger", pending.ID)
	must(t, err)
	if d.Status != Pending || d.Seq != 1 {
		t.Errorf("Delivery = %+v", d)
	}
	at := time.Now().UTC()
	d.Status, d.Attempts = Delivered, []Attempt{{At: at, Status: 200}}
	mustUpdate(t, b, d)
	must(t, b.db.View(func(tx *bolt.Tx) error {
		id := ulid.MustParse(pending.ID)
		if v := tx.Bucket(bucketDeliveries).Get(deliveryKey(id[:], "ledger")); len(v) == 0 || v[0] != deliveryFormat {
			t.Errorf("after Update the delivery is stored as %q, want the binary form", v)
		}
		return nil
	}))
	ds, err := b.Deliveries(pending.ID)
	must(t, err)
	if len(ds) != 1 || ds[0].Status != Delivered || len(ds[0].Attempts) != 1 || !ds[0].Attempts[0].At.Equal(at) {
		t.Errorf("Deliveries = %+v", ds)
	}
	// Both events are old and final: purged, the JSON one by its status.
	if n, err := b.Purge(time.Now().Add(-24 * time.Hour)); err != nil || n != 2 {
		t.Errorf("Purge = %d, %v; want 2", n, err)
	}
}

// legacyDeliveryNoProvider encodes d in the binary form written before keys
// were scoped by provider (format 0x02: no provider in the head).
func legacyDeliveryNoProvider(d *Delivery) []byte {
	b := []byte{deliveryFormatNoProvider}
	b = appendString(b, d.EventID)
	b = appendString(b, d.Destination)
	b = appendString(b, d.Key)
	b = binary.AppendUvarint(b, d.Seq)
	b = binary.AppendVarint(b, d.Sequence)
	return appendDeliveryState(b, d)
}

// legacyQueueValueNoProvider encodes d's queue entry as written before keys
// were scoped by provider: no 0x80 on the status, no provider.
func legacyQueueValueNoProvider(id []byte, d *Delivery) []byte {
	v := append([]byte(nil), id[:16]...)
	v = append(v, statusCode[d.Status])
	var at uint64
	if !d.NextAt.IsZero() {
		at = uint64(d.NextAt.UnixNano())
	}
	v = binary.BigEndian.AppendUint64(v, at)
	v = binary.AppendUvarint(v, uint64(d.Sequence))
	return append(v, d.Key...)
}

func TestDeliveryCodecReadsNoProvider(t *testing.T) {
	want := deliveryFixture()
	want.Provider = "acme"
	var got Delivery
	must(t, decodeDelivery(encodeDelivery(want), &got))
	if got.Provider != "acme" {
		t.Errorf("round trip lost the provider: %+v", got)
	}
	old := *want
	old.Provider = ""
	must(t, decodeDelivery(legacyDeliveryNoProvider(&old), &got))
	if !reflect.DeepEqual(&got, &old) {
		t.Errorf("format 0x02:\n got %+v\nwant %+v", got, old)
	}
}

// TestSpoolWrittenBeforeProviderScope: a spool written before keys were
// scoped by provider (delivery heads and queue entries without the
// provider, the shared last-sequence record) resumes: Pending gives each
// entry its event's provider, Update rewrites both records with it, and
// LastSequence falls back to the shared record until the scoped one exists.
func TestSpoolWrittenBeforeProviderScope(t *testing.T) {
	b := mustOpen(t)
	evs := []*Event{event(time.Now(), "a", "ledger"), event(time.Now(), "b", "ledger")}
	evs[1].Provider, evs[1].Sequence = "other", 7
	must(t, b.db.Update(func(tx *bolt.Tx) error {
		q, err := tx.Bucket(bucketQueue).CreateBucketIfNotExists([]byte("ledger"))
		if err != nil {
			return err
		}
		for i, ev := range evs {
			id := ulid.MustParse(ev.ID)
			enc, err := encodeEvent(ev)
			if err != nil {
				return err
			}
			d := Delivery{EventID: ev.ID, Destination: "ledger", Key: ev.Key, Seq: uint64(i + 1), Sequence: ev.Sequence, Status: Pending}
			if i == 0 {
				d.Status = Dead
			}
			if err := tx.Bucket(bucketEvents).Put(id[:], enc); err != nil {
				return err
			}
			if err := tx.Bucket(bucketDeliveries).Put(deliveryKey(id[:], "ledger"), legacyDeliveryNoProvider(&d)); err != nil {
				return err
			}
			if err := q.Put(u64(d.Seq), legacyQueueValueNoProvider(id[:], &d)); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketLastSeqShared).Put([]byte("ledger\x00loan-1"), u64(6))
	}))
	b = reopen(t, b)

	var got []QueuedDelivery
	must(t, b.Pending("ledger", func(q *QueuedDelivery) error { got = append(got, *q); return nil }))
	if len(got) != 2 || got[0].Provider != "acme" || got[0].Status != Dead || got[1].Provider != "other" ||
		got[1].Key != "loan-1" || got[1].Sequence != 7 {
		t.Fatalf("Pending = %+v; want acme's dead loan-1, then other's loan-1 #7", got)
	}
	if seq, err := b.LastSequence("ledger", "other", "loan-1"); err != nil || seq != 6 {
		t.Errorf("LastSequence before any scoped record = %d, %v; want the shared 6", seq, err)
	}

	d, err := b.Delivery("ledger", evs[1].ID)
	must(t, err)
	d.Status, d.Attempts = Delivered, []Attempt{{At: time.Now().UTC(), Status: 200}}
	mustUpdate(t, b, d)
	d, err = b.Delivery("ledger", evs[0].ID)
	must(t, err)
	d.NextAt = time.Now().Add(time.Hour).UTC()
	mustUpdate(t, b, d) // still dead: its queue entry is rewritten
	must(t, b.db.View(func(tx *bolt.Tx) error {
		for _, ev := range evs {
			id := ulid.MustParse(ev.ID)
			if v := tx.Bucket(bucketDeliveries).Get(deliveryKey(id[:], "ledger")); len(v) == 0 || v[0] != deliveryFormat {
				t.Errorf("after Update the delivery of %s is stored as format %x, want %x", ev.Provider, v[:1], deliveryFormat)
			}
		}
		v := tx.Bucket(bucketQueue).Bucket([]byte("ledger")).Get(u64(1))
		if len(v) < 17 || v[16]&queueHasProvider == 0 {
			t.Errorf("after Update the queue entry is %x, want one with the provider", v)
		}
		return nil
	}))
	got = got[:0]
	must(t, b.Pending("ledger", func(q *QueuedDelivery) error { got = append(got, *q); return nil }))
	if len(got) != 1 || got[0].Provider != "acme" || got[0].Key != "loan-1" || got[0].Status != Dead {
		t.Errorf("Pending after Update = %+v", got)
	}
	if seq, _ := b.LastSequence("ledger", "other", "loan-1"); seq != 7 {
		t.Errorf("LastSequence of other's loan-1 = %d, want 7", seq)
	}
	if seq, _ := b.LastSequence("ledger", "acme", "loan-1"); seq != 6 {
		t.Errorf("LastSequence of acme's loan-1 = %d, want the shared 6 (no scoped record yet)", seq)
	}
}
