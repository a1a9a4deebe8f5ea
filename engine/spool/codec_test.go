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
