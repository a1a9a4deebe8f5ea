package transforms

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func env(body string) *Env {
	e := &Env{Raw: body, Headers: map[string]string{"x-ts": "2024-01-15T10:35:00Z"}, Query: map[string]string{"a": "1"},
		Params: map[string]string{"event": "approved"}, Provider: "p", Now: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)}
	_ = json.Unmarshal([]byte(body), &e.Body)
	return e
}

func TestMapping(t *testing.T) {
	m, err := CompileMapping(EventSpec{
		ID: `body.eventId ?? ""`, Key: "body.onboardingId", Type: "body.eventType",
		Types:    map[string]string{"ONBOARDING_REJECTED": "onboarding.rejected"},
		Sequence: "body.sequence ?? 0", OccurredAt: `headers["x-ts"]`,
		Data: map[string]string{"reason": "body.rejectReason", "path": "params.event", "hash": `sha256("abc")`, "b64": `base64("hi")`, "un": `unbase64("aGk=")`},
	})
	if err != nil {
		t.Fatal(err)
	}
	var ev Event
	id, err := m.Map(env(`{"eventType":"ONBOARDING_REJECTED","onboardingId":"7a0d","rejectReason":"KYC_DENIAL","sequence":3}`), &ev)
	if err != nil {
		t.Fatal(err)
	}
	if id != "" || ev.Key != "7a0d" || ev.Type != "onboarding.rejected" || ev.Sequence != 3 || ev.OccurredAt != "2024-01-15T10:35:00Z" {
		t.Errorf("mapped %+v, id %q", ev, id)
	}
	want := map[string]any{"reason": "KYC_DENIAL", "path": "approved", "b64": "aGk=", "un": "hi",
		"hash": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"}
	for k, v := range want {
		if ev.Data[k] != v {
			t.Errorf("data.%s = %v, want %v", k, ev.Data[k], v)
		}
	}
}

func TestMappingFailures(t *testing.T) {
	m, err := CompileMapping(EventSpec{Key: "body.ref", Sequence: "body.seq"})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ body, want string }{
		{`{}`, "empty key"},
		{`not json`, "event.key"},
		{`{"ref":["a"]}`, "not a single value"},
		{`{"ref":"a","seq":1.5}`, "event.sequence"},
		{`{"ref":"a","seq":-1}`, "event.sequence"},
		{`{"ref":"a","seq":"x"}`, "event.sequence"},
	} {
		var ev Event
		if _, err := m.Map(env(c.body), &ev); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", c.body, err, c.want)
		}
	}
	var ev Event
	if _, err := m.Map(env(`{"ref":12345678,"seq":"7"}`), &ev); err != nil || ev.Key != "12345678" || ev.Sequence != 7 {
		t.Errorf("numeric key and string sequence: %+v %v", ev, err)
	}
}

func TestCompileErrorsNameTheField(t *testing.T) {
	for spec, field := range map[*EventSpec]string{
		{Key: ""}:         "key",
		{Key: "body.x +"}: "key",
		{Key: "body.x", Data: map[string]string{"a": "("}}: "data.a",
		{Key: "body.x", Type: "nosuchvar"}:                 "type",
	} {
		_, err := CompileMapping(*spec)
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != field {
			t.Errorf("%+v: error %v, want a FieldError on %s", spec, err, field)
		}
	}
}

func TestTemplate(t *testing.T) {
	e := env(`{"x":1}`)
	e.Event = &Event{Type: "credit.updated", Key: "k/1", Sequence: 2}
	for src, want := range map[string]string{
		"http://h/plain":                                  "http://h/plain",
		"http://h/{{ event.type }}":                       "http://h/credit.updated",
		"{{event.key}}-{{ event.sequence }}-{{ body.x }}": "k/1-2-1",
		"{{ nil }}": "",
	} {
		tp, err := CompileTemplate(src)
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		got, err := tp.Execute(e)
		if err != nil || got != want {
			t.Errorf("%s: got %q %v, want %q", src, got, err, want)
		}
	}
	for _, bad := range []string{"{{ event.type", "{{ ) }}"} {
		if _, err := CompileTemplate(bad); err == nil {
			t.Errorf("%q compiled", bad)
		}
	}
}

func TestBoolProgramAndNow(t *testing.T) {
	p, err := CompileBool(`event.type == "a" && now.Year() == 2026`)
	if err != nil {
		t.Fatal(err)
	}
	e := env(`{}`)
	e.Event = &Event{Type: "a"}
	if v, err := p.Run(e); err != nil || v != true {
		t.Errorf("got %v %v", v, err)
	}
	if _, err := CompileBool(`event.type`); err == nil {
		t.Error("a string expression compiled as a boolean")
	}
}

func FuzzMapping(f *testing.F) {
	m, err := CompileMapping(EventSpec{ID: `body.id ?? ""`, Key: "body.key", Type: "body.type", Sequence: "body.seq ?? 0",
		OccurredAt: "body.at", Data: map[string]string{"d": "body.data"}})
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{`{"key":"k","seq":1,"at":"2024-01-01T00:00:00Z"}`, `[]`, `null`, `{"key":{}}`, `{"key":1e300,"seq":1e300}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		var ev Event
		_, _ = m.Map(env(body), &ev) // must not panic
	})
}
