package engine

import (
	"encoding/binary"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/hookrelay/hookrelay/engine/dispatch"
)

// scopeProviders are two lenders that both key their events by body.key.
func scopeProviders() map[string]string {
	return map[string]string{
		"avida":    strings.Replace(plainProvider, "/in/plain", "/in/avida", 1),
		"nordiska": strings.Replace(plainProvider, "/in/plain", "/in/nordiska", 1),
	}
}

// scopeBody is an event of key ON-9 numbered n.
func scopeBody(n int) string {
	return `{"key":"ON-9","type":"t","n":` + strconv.Itoa(n) + `}`
}

// deliveredN lists the n of provider's events the recorder answered 2xx, in order.
func deliveredN(t *testing.T, rec *recorder, provider string) []int {
	var out []int
	for _, ev := range rec.delivered(t) {
		if ev["provider"] == provider {
			out = append(out, int(ev["data"].(map[string]any)["n"].(float64)))
		}
	}
	return out
}

// heldKeys reads the held keys of destination dest from the admin API.
func heldKeysOf(tr *testRelay, dest string) []dispatch.HeldKey {
	var page struct {
		Items []struct {
			Name string             `json:"name"`
			Held []dispatch.HeldKey `json:"held"`
		} `json:"items"`
	}
	tr.get("/admin/destinations", &page)
	for _, it := range page.Items {
		if it.Name == dest {
			return it.Held
		}
	}
	return nil
}

// TestKeysScopedByProvider: Avida's ON-9 goes dead (a permanent 400) and,
// with on_exhausted: hold, blocks Avida's ON-9; Nordiska's ON-9 through the
// same destination is another key and is still delivered (SPEC 5.2).
func TestKeysScopedByProvider(t *testing.T) {
	rec := newRecorder(t, func(_ int, r *http.Request) int {
		if r.Header.Get("X-Hookrelay-Provider") == "avida" {
			return http.StatusBadRequest
		}
		return http.StatusOK
	})
	tr := startRelay(t, relayYAML(rec.srv.URL, "    on_exhausted: hold\n"), scopeProviders())
	must(t, tr.ingestAt("/in/avida", scopeBody(1)))
	waitFor(t, 5*time.Second, "avida's ON-9 to go dead", func() bool {
		h := heldKeysOf(tr, "dest")
		return len(h) == 1 && h[0].Provider == "avida" && h[0].Key == "ON-9"
	})
	must(t, tr.ingestAt("/in/avida", scopeBody(2)))
	must(t, tr.ingestAt("/in/nordiska", scopeBody(3)))
	waitFor(t, 5*time.Second, "nordiska's ON-9", func() bool { return len(deliveredN(t, rec, "nordiska")) == 1 })
	if h := heldKeysOf(tr, "dest"); len(h) != 1 || h[0].Provider != "avida" || h[0].Waiting != 1 {
		t.Errorf("held keys %+v, want avida's ON-9 with one event waiting", h)
	}
	// The operator's skip releases Avida's key alone.
	ev := tr.events("provider=avida&status=dead")
	if len(ev.Items) != 1 {
		t.Fatalf("avida's dead events: %+v", ev.Items)
	}
	tr.do(http.MethodPost, "/admin/events/"+ev.Items[0].ID+"/skip", "", http.StatusOK, nil)
	waitFor(t, 5*time.Second, "avida's second event tried", func() bool {
		h := heldKeysOf(tr, "dest")
		return len(h) == 1 && h[0].Waiting == 0 // its 2 is dead now (400), nothing behind it
	})
}

// TestSpoolWithoutProviderScopeResumes writes a spool with the relay, turns
// its records into the forms written before keys were scoped by provider
// (delivery heads and queue entries without the provider, the shared
// last-sequence bucket), and restarts on it: Avida's held ON-9 still holds
// only Avida's key, and Nordiska's pending ON-9 events go, in order, with a
// new one behind them.
func TestSpoolWithoutProviderScopeResumes(t *testing.T) {
	needBolt(t)
	var up atomic.Bool
	rec := newRecorder(t, func(_ int, r *http.Request) int {
		switch {
		case r.Header.Get("X-Hookrelay-Provider") == "avida":
			return http.StatusBadRequest
		case !up.Load():
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	tr := startRelay(t, relayYAML(rec.srv.URL, "    on_exhausted: hold\n    retry: {initial: 1ms, max: 20ms, max_attempts: 1000}\n"),
		scopeProviders())
	must(t, tr.ingestAt("/in/avida", scopeBody(1)))
	waitFor(t, 5*time.Second, "avida's ON-9 to go dead", func() bool { return len(heldKeysOf(tr, "dest")) == 1 })
	must(t, tr.ingestAt("/in/avida", scopeBody(2)))
	must(t, tr.ingestAt("/in/nordiska", scopeBody(3)))
	must(t, tr.ingestAt("/in/nordiska", scopeBody(4)))
	waitFor(t, 5*time.Second, "nordiska's first attempt", func() bool {
		for _, r := range rec.requests() {
			if r.Header.Get("X-Hookrelay-Provider") == "nordiska" {
				return true
			}
		}
		return false
	})
	tr.stop()
	unscopeSpool(t, filepath.Join(tr.dir, "spool.db"))

	up.Store(true)
	tr = tr.restart()
	must(t, tr.ingestAt("/in/nordiska", scopeBody(5)))
	waitFor(t, 5*time.Second, "nordiska's three", func() bool { return len(deliveredN(t, rec, "nordiska")) == 3 })
	if got := deliveredN(t, rec, "nordiska"); len(got) != 3 || got[0] != 3 || got[1] != 4 || got[2] != 5 {
		t.Errorf("nordiska delivered %v, want [3 4 5]", got)
	}
	if h := heldKeysOf(tr, "dest"); len(h) != 1 || h[0].Provider != "avida" || h[0].Key != "ON-9" || h[0].Waiting != 1 {
		t.Errorf("held keys after the restart %+v, want avida's ON-9 with its 2 waiting", h)
	}
}

// unscopeSpool rewrites the spool at path into the record forms written
// before keys were scoped by provider (engine/spool/codec.go, ops.go).
func unscopeSpool(t *testing.T, path string) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	must(t, err)
	defer func() { _ = db.Close() }()
	// cut removes the uvarint-prefixed string at b[at:].
	cut := func(b []byte, at int) []byte {
		n, k := binary.Uvarint(b[at:])
		if k <= 0 {
			t.Fatalf("bad record %x", b)
		}
		return append(append([]byte(nil), b[:at]...), b[at+k+int(n):]...)
	}
	skip := func(b []byte, at int) int { // past the string at b[at:]
		n, k := binary.Uvarint(b[at:])
		return at + k + int(n)
	}
	rewritten := 0
	must(t, db.Update(func(tx *bolt.Tx) error {
		ds := tx.Bucket([]byte("deliveries"))
		type kv struct{ k, v []byte }
		var puts []kv
		must(t, ds.ForEach(func(k, v []byte) error {
			if v[0] != 0x03 {
				t.Fatalf("delivery in format %x, want 0x03", v[0])
			}
			old := cut(v, skip(v, skip(v, 1))) // after event id and destination: the provider
			old[0] = 0x02
			puts = append(puts, kv{append([]byte(nil), k...), old})
			return nil
		}))
		for _, p := range puts {
			must(t, ds.Put(p.k, p.v))
		}
		q := tx.Bucket([]byte("queue"))
		must(t, q.ForEachBucket(func(dest []byte) error {
			b := q.Bucket(dest)
			var puts []kv
			must(t, b.ForEach(func(k, v []byte) error {
				if v[16]&0x80 == 0 {
					t.Fatalf("queue entry without the provider flag: %x", v)
				}
				_, n := binary.Uvarint(v[25:])
				old := cut(v, 25+n)
				old[16] &^= 0x80
				puts = append(puts, kv{append([]byte(nil), k...), old})
				return nil
			}))
			for _, p := range puts {
				must(t, b.Put(p.k, p.v))
				rewritten++
			}
			return nil
		}))
		return tx.DeleteBucket([]byte("last_sequence_by_provider"))
	}))
	if rewritten != 4 {
		t.Fatalf("%d queue entries rewritten, want 4 (avida's 1 and 2, nordiska's 3 and 4)", rewritten)
	}
}

// TestProviderNameWithNULRefused: queues are keyed by provider, a NUL and
// the sender's key, so a provider called "a\x00b" would share the queue of
// provider a's key "b\x00<key>", which a's sender chooses. Such a name (any
// control character) is a configuration error.
func TestProviderNameWithNULRefused(t *testing.T) {
	dir := t.TempDir()
	writeConfig(t, dir, relayYAML("http://127.0.0.1:1/x", ""), map[string]string{
		"a": strings.Replace(plainProvider, "/in/plain", "/in/a", 1),
		"b": "name: \"a\\0b\"\n" + strings.Replace(plainProvider, "/in/plain", "/in/b", 1),
	})
	_, err := Load(filepath.Join(dir, "relay.yaml"), true)
	if err == nil || !strings.Contains(err.Error(), `b.yaml:1: name: "a\x00b" holds a control character`) {
		t.Fatalf("load: %v", err)
	}
}
