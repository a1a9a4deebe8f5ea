package provider

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/transforms"
)

func TestMarshalEnvelopeSplicesRaw(t *testing.T) {
	for _, raw := range []string{`{"a": [1, 2 ,3]}`, `"text"`, `  {"x":"\u00e9"}  `, `null`} {
		ev := &transforms.Event{ID: "01J", Provider: "p", Type: "t", Key: "k", ReceivedAt: time.Unix(1, 0).UTC(),
			Data: map[string]any{"n": 1}, Raw: json.RawMessage(raw)}
		got, err := MarshalEnvelope(ev)
		if err != nil || !json.Valid(got) {
			t.Fatalf("%s: %s %v", raw, got, err)
		}
		want, _ := json.Marshal(ev)
		var g, w any
		_ = json.Unmarshal(got, &g)
		_ = json.Unmarshal(want, &w)
		if !reflect.DeepEqual(g, w) {
			t.Errorf("%s:\n got %s\nwant %s", raw, got, want)
		}
		if string(ev.Raw) != raw {
			t.Errorf("the event's raw changed")
		}
	}
}
