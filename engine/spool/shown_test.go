package spool

import (
	"encoding/json"
	"reflect"
	"testing"
)

// TestShownCloneIsDeep: masking a clone (in place) must leave the event it
// was cloned from as decoded, nested maps and lists included.
func TestShownCloneIsDeep(t *testing.T) {
	ev := &Event{Envelope: json.RawMessage(`{"id":"01J","data":{"a":{"b":[1,{"c":"x"}]}},"raw":{"n":"y"},"sequence":0}`)}
	s := ev.Shown()
	want := ev.Shown()
	c := s.Clone()
	if !reflect.DeepEqual(c, s) {
		t.Fatalf("clone %v differs from %v", c, s)
	}
	c["data"].(map[string]any)["a"].(map[string]any)["b"].([]any)[1].(map[string]any)["c"] = "***"
	c["raw"].(map[string]any)["n"] = "***"
	c["id"] = "changed"
	if !reflect.DeepEqual(s, want) {
		t.Errorf("changing the clone changed the original: %v", s)
	}
	if Shown(nil).Clone() != nil {
		t.Error("a nil Shown clones to a non-nil one")
	}
}
