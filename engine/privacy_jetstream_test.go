package engine

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/oklog/ulid/v2"

	"github.com/hookrelay/hookrelay/engine/seal"
	"github.com/hookrelay/hookrelay/engine/spool"
	"github.com/hookrelay/hookrelay/engine/spool/jetstream"
	"github.com/hookrelay/hookrelay/engine/spool/jetstream/natstest"
)

// storeBytes reads every file under a NATS server's store directory.
func storeBytes(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	must(t, filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		out[p] = b
		return err
	}))
	return out
}

// scanStore fails the test for every needle found in a file of the store
// directory, in clear or as the base64url the servers' subjects and KV
// keys would carry it.
func scanStore(t *testing.T, dir, when string, needles ...string) {
	t.Helper()
	files := storeBytes(t, dir)
	if len(files) == 0 {
		t.Fatalf("%s: no files under %s", when, dir)
	}
	for p, b := range files {
		for _, n := range needles {
			for _, form := range []string{n, base64.RawURLEncoding.EncodeToString([]byte(n)), base64.StdEncoding.EncodeToString([]byte(n))} {
				if i := bytes.Index(b, []byte(form)); i >= 0 {
					rel, _ := filepath.Rel(dir, p)
					t.Errorf("%s: %s holds %q (as %q) at byte %d", when, rel, n, form, i)
				}
			}
		}
	}
}

// copyTree copies the regular files of a directory tree.
func copyTree(t *testing.T, from, to string) {
	t.Helper()
	for p, b := range storeBytes(t, from) {
		rel, err := filepath.Rel(from, p)
		must(t, err)
		must(t, os.MkdirAll(filepath.Join(to, filepath.Dir(rel)), 0o700))
		must(t, os.WriteFile(filepath.Join(to, rel), b, 0o600))
	}
}

// TestPrivacyKomparJetStream is TestPrivacyKomparAtRestAndErasure on a
// JetStream spool (SPEC 11 and 12): the seed document's Kompar examples
// with canary personal numbers and names go through the real listener and
// no file of the NATS server's store directory holds one; after DELETE
// /admin/keys/kompar/KEY no file holds anything of that key, its name
// included (in clear or base64url, as subjects and KV keys would), and a
// copy of the store taken before the erasure no longer opens that key's
// events with the keystore as it is now, while the other key's still do.
func TestPrivacyKomparJetStream(t *testing.T) {
	for k, v := range shippedEnv {
		t.Setenv(k, v)
	}
	t.Setenv("HOOKRELAY_TEST_DATA_KEY", newDataKey(t))
	nats := natstest.Run(t)
	rec := newRecorder(t, nil)
	dir := t.TempDir()
	writeConfig(t, dir, "listen: 127.0.0.1:18080\nadmin: { listen: 127.0.0.1:19090 }\n"+
		"spool:\n  kind: jetstream\n  nats: { urls: ["+nats.ClientURL()+"], stream: PRIV, partitions: 4 }\n"+
		"providers_dir: "+strconv.Quote(mustAbs(t, "../providers.d"))+"\n"+
		"privacy: { key: env:HOOKRELAY_TEST_DATA_KEY }\n"+
		"destinations:\n  broker:\n    url: "+strconv.Quote(rec.srv.URL+"/lender-events")+"\n", nil)
	cfg, err := Load(filepath.Join(dir, "relay.yaml"), true)
	must(t, err)
	tr := serveConfig(t, dir, cfg)

	ids := seedKomparCanaries(t, tr, rec)
	scanStore(t, nats.Dir, "with privacy", canaries...)

	// The erased key's other records, which ingest of these documents does
	// not make: a poll state, a released sequence number and a
	// quarantined request stored with the key, written through a second
	// connection with the relay's keystore.
	master, err := seal.ParseMasterKey(os.Getenv("HOOKRELAY_TEST_DATA_KEY"))
	must(t, err)
	openKeys := func() *seal.Keystore {
		keys, err := jetstream.OpenKeys(context.Background(), jetstream.Options{URLs: []string{nats.ClientURL()}, Stream: "PRIV"})
		must(t, err)
		ks, err := seal.OpenStore(keys, master)
		must(t, err)
		t.Cleanup(func() { _ = ks.Close() })
		return ks
	}
	side, err := jetstream.Open(context.Background(), jetstream.Options{URLs: []string{nats.ClientURL()}, Stream: "PRIV", Partitions: 4,
		Spool: spool.Options{Sealer: openKeys()}})
	must(t, err)
	defer func() { _ = side.Close() }()
	ctx := context.Background()
	_, err = side.PollTrack(ctx, []spool.TrackedKey{{Provider: "kompar", Key: erased}})
	must(t, err)
	must(t, side.PollSave(ctx, "kompar", erased, &spool.PollState{LastType: "granted " + goneName}))
	seqID := ulid.Make().String()
	_, err = side.Append(ctx, &spool.Event{ID: seqID, Provider: "kompar", Type: "application.sequenced", Key: erased, Sequence: 7,
		IdempotencyID: "seq-" + seqID, Envelope: json.RawMessage(`{"name":"` + goneName + `"}`), Raw: []byte(goneSSN),
		Destinations: []string{"elsewhere"}}, 0)
	must(t, err)
	must(t, side.Update(ctx, &spool.Delivery{EventID: seqID, Destination: "elsewhere", Status: spool.Delivered,
		Attempts: []spool.Attempt{{Status: 200, Response: "ok " + goneSSN}}}))
	if n, err := side.LastSequence("elsewhere", "kompar", erased); err != nil || n != 7 {
		t.Fatalf("the erased key's last sequence: %d, %v", n, err)
	}
	must(t, side.Quarantine(ctx, &spool.Quarantined{ID: ulid.Make().String(), Provider: "kompar", Key: erased,
		Reason: "no route", Body: []byte(`{"ssn":"` + goneSSN + `"}`)}))
	scanStore(t, nats.Dir, "with the other records", canaries...)

	// A backup of the server's store, taken before the erasure.
	backup := t.TempDir()
	copyTree(t, nats.Dir, backup)

	var answer struct {
		Provider, Key, Error                            string
		Events, Deliveries, Pending, Quarantined, Dedup int
		PollStates                                      int `json:"poll_states"`
	}
	if code := adminDo(t, tr, http.MethodDelete, "/admin/keys/kompar/"+url.PathEscape(erased), &answer); code != http.StatusOK ||
		answer.Key != erased || answer.Events != 3 || answer.Deliveries != 3 || answer.Pending != 0 ||
		answer.Quarantined != 1 || answer.PollStates != 1 {
		t.Fatalf("DELETE /admin/keys/kompar/%s: %d %+v, want 3 events and 3 deliveries, none pending, 1 quarantined, 1 poll state", erased, code, answer)
	}
	for _, id := range ids[erased] {
		if code := adminDo(t, tr, http.MethodGet, "/admin/events/"+id, nil); code != http.StatusNotFound {
			t.Errorf("GET /admin/events/%s after the erasure: %d, want 404", id, code)
		}
	}
	var page struct{ Items []map[string]any }
	adminDo(t, tr, http.MethodGet, "/admin/events?key="+url.QueryEscape(kept), &page)
	if len(page.Items) != 1 {
		t.Errorf("events of the kept key: %v, want 1", page.Items)
	}
	scanStore(t, nats.Dir, "after the erasure", append(canaries, erased)...)
	found := false
	for _, b := range storeBytes(t, nats.Dir) {
		found = found || bytes.Contains(b, []byte(kept))
	}
	if !found {
		t.Errorf("the store lacks the kept key %s: the scan cannot see what it looks for", kept)
	}

	// The backup on a server of its own, read with the keystore as it is
	// now (the live server's): the erased key's events do not open, the
	// kept key's do.
	old, err := natstest.Start(backup)
	must(t, err)
	t.Cleanup(old.Close)
	ks := openKeys()
	st, err := jetstream.Open(context.Background(), jetstream.Options{URLs: []string{old.ClientURL()}, Stream: "PRIV", Partitions: 4,
		Spool: spool.Options{Sealer: ks}})
	must(t, err)
	defer func() { _ = st.Close() }()
	for _, id := range append(ids[erased], seqID) {
		if ev, err := st.Event(id); !errors.Is(err, seal.ErrShredded) {
			t.Errorf("backup: event %s of the erased key: %v, %v; want seal.ErrShredded", id, ev, err)
		}
	}
	ev, err := st.Event(ids[kept][0])
	if err != nil || !bytes.Contains(ev.Raw, []byte(keptSSN)) {
		t.Errorf("backup: the kept key's event: %v (%v); want it readable with its ssn", ev, err)
	}
}

// TestMigratePrivacy: with privacy, migrate opens the bbolt spool with the
// keystore beside it and seals the copies under the JetStream keystore's
// data keys: the event reads back whole from the stream, and no file of
// the server holds its personal data.
func TestMigratePrivacy(t *testing.T) {
	for k, v := range shippedEnv {
		t.Setenv(k, v)
	}
	t.Setenv("HOOKRELAY_TEST_DATA_KEY", newDataKey(t))
	rec := newRecorder(t, func(int, *http.Request) int { return http.StatusServiceUnavailable })
	dir := t.TempDir()
	common := "providers_dir: " + strconv.Quote(mustAbs(t, "../providers.d")) + "\n" +
		"privacy: { key: env:HOOKRELAY_TEST_DATA_KEY }\n" +
		"destinations:\n  broker:\n    url: " + strconv.Quote(rec.srv.URL+"/lender-events") + "\n"
	writeConfig(t, dir, "spool: { path: ./data/spool.db }\n"+common, nil)
	cfg, err := Load(filepath.Join(dir, "relay.yaml"), true)
	must(t, err)
	tr := serveConfig(t, dir, cfg)
	const ssn = "195505055555"
	seedAccept(t, tr, "/in/kompar/applications", komparBody(t, komparKey, komparApplication("KMP-2026-MOVE", "Flytt Kanarie", ssn, "196606066666", "Flytt AB")), komparHeaders)
	waitFor(t, seedWait, "a failed attempt", func() bool { return len(rec.requests()) >= 1 })
	tr.stop()

	nats := natstest.Run(t)
	jsDir := t.TempDir()
	writeConfig(t, jsDir, "spool:\n  kind: jetstream\n  nats: { urls: ["+nats.ClientURL()+"], stream: MOVEP, partitions: 4 }\n"+common, nil)
	jsCfg, err := Load(filepath.Join(jsDir, "relay.yaml"), true)
	must(t, err)
	n, err := Migrate(context.Background(), jsCfg, MigrateOptions{Bolt: filepath.Join(dir, "data", "spool.db")})
	if err != nil || n.Events != 1 || n.Pending != 1 {
		t.Fatalf("migrate: %+v, %v; want 1 event, 1 pending", n, err)
	}
	scanStore(t, nats.Dir, "after the migration", ssn, "Flytt Kanarie")

	master, err := seal.ParseMasterKey(os.Getenv("HOOKRELAY_TEST_DATA_KEY"))
	must(t, err)
	keys, err := jetstream.OpenKeys(context.Background(), jetstream.Options{URLs: []string{nats.ClientURL()}, Stream: "MOVEP"})
	must(t, err)
	ks, err := seal.OpenStore(keys, master)
	must(t, err)
	defer func() { _ = ks.Close() }()
	st, err := jetstream.Open(context.Background(), jetstream.Options{URLs: []string{nats.ClientURL()}, Stream: "MOVEP", Partitions: 4,
		Spool: spool.Options{Sealer: ks}})
	must(t, err)
	defer func() { _ = st.Close() }()
	var got []*spool.Delivery
	must(t, st.Queue("broker", func(d *spool.Delivery) error { got = append(got, d); return nil }))
	if len(got) != 1 || len(got[0].Attempts) == 0 {
		t.Fatalf("the stream's queue: %+v, want one delivery with its attempts", got)
	}
	ev, err := st.Event(got[0].EventID)
	if err != nil || !bytes.Contains(ev.Raw, []byte(ssn)) {
		t.Errorf("the migrated event: %v, %v; want it whole", ev, err)
	}
}
