package spool

import (
	"reflect"
	"testing"
	"time"
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

func FuzzDecodeEvent(f *testing.F) {
	b, _ := encodeEvent(event(time.Now(), "acme:1", "broker"))
	f.Add(b)
	f.Add([]byte{eventFormat, 1, '{'})
	f.Fuzz(func(t *testing.T, v []byte) {
		_, _ = decodeEvent(v)
		_, _ = eventReceivedAt(v)
	})
}
