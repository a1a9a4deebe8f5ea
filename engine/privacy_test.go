package engine

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/hookrelay/hookrelay/engine/seal"
	"github.com/hookrelay/hookrelay/engine/spool"
)

// newDataKey is a fresh privacy.key: 32 random bytes in base64.
func newDataKey(t *testing.T) string {
	t.Helper()
	raw := make([]byte, 32)
	_, err := rand.Read(raw)
	must(t, err)
	return base64.StdEncoding.EncodeToString(raw)
}

// adminDo sends an admin request and decodes the JSON answer into out.
func adminDo(t *testing.T, tr *testRelay, method, path string, out any) int {
	t.Helper()
	req, err := http.NewRequest(method, tr.Admin.URL+path, nil)
	must(t, err)
	resp, err := http.DefaultClient.Do(req)
	must(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	must(t, err)
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %d %s: %v", method, path, resp.StatusCode, b, err)
		}
	}
	return resp.StatusCode
}

// scanFile fails the test for every needle found in the file's raw bytes.
func scanFile(t *testing.T, path, when string, needles ...string) {
	t.Helper()
	b, err := os.ReadFile(path)
	must(t, err)
	for _, n := range needles {
		if i := bytes.Index(b, []byte(n)); i >= 0 {
			t.Errorf("%s: %s holds %q in clear at byte %d", when, filepath.Base(path), n, i)
		}
	}
}

// komparApplication is the seed document's Kompar application (as
// TestSeedKompar sends it) with key id and the given personal data.
func komparApplication(id, name, ssn, guarantor, company string) string {
	return `{"application_id":"` + id + `","name":"` + name + `","company_id":"556677-8899",` +
		`"company_name":"` + company + `","company_type":"AB","company_revenue":125000.5,"company_age":4.5,` +
		`"amount":500000,"duration":24,"purpose":"working_capital","ssn":"` + ssn + `",` +
		`"guarantors":[{"ssn":"` + guarantor + `"}],` +
		`"company_last_year_revenue":1400000.75,"company_description":"Construction and renovation in Goteborg",` +
		`"attachments":["annual-report-2023.pdf"],"description_of_property":"Office building, Hisingen"}`
}

// The privacy tests' canaries: personal numbers, names and a company name,
// one set per Kompar key (erased is the key the tests erase).
const (
	erased, kept                                  = "KMP-2026-CANARYERASE", "KMP-2026-CANARYKEEP"
	goneSSN, goneGuarantor, goneName, goneCompany = "193101017771", "193202028882", "Kanarie Raderasson", "Raderad Kanarie Bygg AB"
	keptSSN, keptGuarantor, keptName, keptCompany = "194403039993", "194504040004", "Kanarie Behallsson", "Behallen Kanarie AB"
)

var canaries = []string{goneSSN, goneGuarantor, goneName, goneCompany, keptSSN, keptGuarantor, keptName, keptCompany}

// seedKomparCanaries sends the erased key's application and decision and
// the kept key's application through tr, waits until rec has all three and
// tr's backlog is empty, checks that the broker got the real values, and
// returns the delivered event ids by key.
func seedKomparCanaries(t *testing.T, tr *testRelay, rec *recorder) map[string][]string {
	t.Helper()
	seedAccept(t, tr, "/in/kompar/applications", komparBody(t, komparKey, komparApplication(erased, goneName, goneSSN, goneGuarantor, goneCompany)), komparHeaders)
	seedAccept(t, tr, "/in/kompar/decisions", komparBody(t, komparKey, `{"application_id":"`+erased+`","name":"`+goneName+`"}`), komparHeaders)
	seedAccept(t, tr, "/in/kompar/applications", komparBody(t, komparKey, komparApplication(kept, keptName, keptSSN, keptGuarantor, keptCompany)), komparHeaders)
	waitFor(t, seedWait, "3 deliveries", func() bool { return len(rec.delivered(t)) >= 3 })
	waitFor(t, seedWait, "the deliveries recorded delivered", func() bool { p, _ := tr.Backlog(); return p == 0 })

	// The broker gets the real values.
	ids := map[string][]string{}
	for _, ev := range rec.delivered(t) {
		key, _ := ev["key"].(string)
		ids[key] = append(ids[key], ev["id"].(string))
	}
	all, _ := json.Marshal(rec.delivered(t))
	for _, c := range []string{goneSSN, goneGuarantor, goneName, keptSSN, keptName, keptCompany} {
		if !bytes.Contains(all, []byte(c)) {
			t.Errorf("the broker did not get %q", c)
		}
	}
	if len(ids[erased]) != 2 || len(ids[kept]) != 1 {
		t.Fatalf("delivered events by key: %v", ids)
	}
	return ids
}

// TestPrivacyKomparAtRestAndErasure is SPEC 11's "Done when", first part:
// with privacy on, the seed document's Kompar example carrying canary
// personal numbers and names goes through the real listener and reaches the
// broker with its real values, while the raw spool file holds none of them;
// DELETE /admin/keys/kompar/KEY answers what it removed, the key's records
// are gone, every byte of them, and a copy of the spool taken before the erasure can no
// longer be decrypted for that key (the other key still can).
func TestPrivacyKomparAtRestAndErasure(t *testing.T) {
	needBolt(t)
	for k, v := range shippedEnv {
		t.Setenv(k, v)
	}
	t.Setenv("HOOKRELAY_TEST_DATA_KEY", newDataKey(t))
	rec := newRecorder(t, nil)
	dir := t.TempDir()
	writeConfig(t, dir, "listen: 127.0.0.1:18080\nadmin: { listen: 127.0.0.1:19090 }\nspool: { path: ./data/spool.db }\n"+
		"providers_dir: "+strconv.Quote(mustAbs(t, "../providers.d"))+"\n"+
		"privacy: { key: env:HOOKRELAY_TEST_DATA_KEY }\n"+
		"destinations:\n  broker:\n    url: "+strconv.Quote(rec.srv.URL+"/lender-events")+"\n", nil)
	tr := openRelay(t, dir)
	spoolPath, keysPath := filepath.Join(dir, "data", "spool.db"), filepath.Join(dir, "data", "keys.db")
	if tr.keys == nil || tr.keys.Path() != keysPath {
		t.Fatalf("keystore not opened at %s (the default, beside the spool)", keysPath)
	}

	ids := seedKomparCanaries(t, tr, rec)
	scanFile(t, spoolPath, "with privacy", canaries...)
	scanFile(t, keysPath, "with privacy", canaries...)

	// A backup of the spool, taken before the erasure (what an operator's
	// nightly copy is).
	backup := filepath.Join(t.TempDir(), "spool-backup.db")
	b, err := os.ReadFile(spoolPath)
	must(t, err)
	must(t, os.WriteFile(backup, b, 0o600))

	var answer struct {
		Provider, Key                                   string
		Events, Deliveries, Pending, Quarantined, Dedup int
		PollStates                                      int `json:"poll_states"`
	}
	if code := adminDo(t, tr, http.MethodDelete, "/admin/keys/kompar/"+url.PathEscape(erased), &answer); code != http.StatusOK ||
		answer.Provider != "kompar" || answer.Key != erased || answer.Events != 2 || answer.Deliveries != 2 || answer.Pending != 0 {
		t.Fatalf("DELETE /admin/keys/kompar/%s: %d %+v, want 2 events and 2 deliveries, none pending", erased, code, answer)
	}
	// Nothing of the key is left to read; the other key is untouched.
	for _, id := range ids[erased] {
		if code := adminDo(t, tr, http.MethodGet, "/admin/events/"+id, nil); code != http.StatusNotFound {
			t.Errorf("GET /admin/events/%s after the erasure: %d, want 404", id, code)
		}
	}
	var page struct{ Items []map[string]any }
	adminDo(t, tr, http.MethodGet, "/admin/events?key="+url.QueryEscape(erased), &page)
	if len(page.Items) != 0 {
		t.Errorf("events of the erased key listed: %v", page.Items)
	}
	adminDo(t, tr, http.MethodGet, "/admin/events?key="+url.QueryEscape(kept), &page)
	if len(page.Items) != 1 {
		t.Errorf("events of the kept key: %v, want 1", page.Items)
	}
	// Again: nothing left, so zeros.
	if code := adminDo(t, tr, http.MethodDelete, "/admin/keys/kompar/"+url.PathEscape(erased), &answer); code != http.StatusOK || answer.Events != 0 {
		t.Errorf("a second erasure: %d %+v, want zeros", code, answer)
	}
	// Nothing of the erased key is left in the file, not its name either:
	// the erasure overwrote the pages its deletions freed.
	scanFile(t, spoolPath, "after the erasure", append(canaries, erased)...)
	scanFile(t, keysPath, "after the erasure", append(canaries, erased)...)
	if c, _ := os.ReadFile(spoolPath); !bytes.Contains(c, []byte(kept)) {
		t.Errorf("the spool lacks the kept key %s: the scan cannot see what it looks for", kept)
	}
	tr.stop()

	// The backup, opened with the keystore and master key as they are now:
	// the erased key's records do not open, the kept key's do.
	master, err := seal.ParseMasterKey(os.Getenv("HOOKRELAY_TEST_DATA_KEY"))
	must(t, err)
	ks, err := seal.Open(keysPath, master)
	must(t, err)
	defer func() { _ = ks.Close() }()
	old, err := spool.Open(backup, spool.Options{Sealer: ks})
	must(t, err)
	defer func() { _ = old.Close() }()
	for _, id := range ids[erased] {
		if ev, err := old.Event(id); !errors.Is(err, seal.ErrShredded) {
			t.Errorf("backup: event %s of the erased key: %v, %v; want seal.ErrShredded", id, ev, err)
		}
	}
	ev, err := old.Event(ids[kept][0])
	if err != nil || !bytes.Contains(ev.Raw, []byte(keptSSN)) {
		t.Errorf("backup: the kept key's event: %v (%v); want it readable with its ssn", ev, err)
	}
	// Without the keystore the backup opens nothing at all.
	must(t, os.WriteFile(backup+".copy", b, 0o600))
	bare, err := spool.Open(backup+".copy", spool.Options{})
	must(t, err)
	defer func() { _ = bare.Close() }()
	if _, err := bare.Event(ids[kept][0]); !errors.Is(err, spool.ErrSealed) {
		t.Errorf("backup without the keystore: %v, want spool.ErrSealed", err)
	}
}

// keyedQuarantineProvider maps the key first, then fails on the type of a
// body whose type is "bad": such a request is quarantined with its key.
const keyedQuarantineProvider = `
paths: [/in/plain]
verify:
  - kind: bearer
    token: t0ken
event:
  key: body.key
  type: 'body.type == "bad" ? body.missing.deeper : body.type'
routes:
  - to: [dest]
`

// TestEraseKeyDropsQueuedDeliveries: erasure removes a key's pending
// deliveries from the dispatcher's queues too: a dead one that held its key
// and the one behind it, and one waiting for a retry, so that nothing of
// the key is sent afterwards and the destination's gauges drop. A request
// quarantined after its key was read is stored with the key and erased with
// it.
func TestEraseKeyDropsQueuedDeliveries(t *testing.T) {
	t.Setenv("HOOKRELAY_TEST_DATA_KEY", newDataKey(t))
	rec := newRecorder(t, func(_ int, r *http.Request) int {
		switch r.URL.Path {
		case "/dead-k":
			return http.StatusBadRequest // permanent: dead, and the key held
		case "/wait-k":
			return http.StatusServiceUnavailable // retried in an hour
		}
		return http.StatusOK
	})
	tr := startRelay(t, relayYAML(rec.srv.URL+"/{{ event.key }}", "    retry: {schedule: [1h]}\n")+"privacy: { key: env:HOOKRELAY_TEST_DATA_KEY }\n",
		map[string]string{"plain": keyedQuarantineProvider})
	for _, body := range []string{`{"key":"dead-k","type":"a"}`, `{"key":"dead-k","type":"b"}`, `{"key":"wait-k","type":"a"}`, `{"key":"ok-k","type":"a"}`} {
		must(t, tr.ingestAt("/in/plain", body))
	}
	if resp := tr.post("/in/plain", `{"key":"dead-k","type":"bad"}`, authPlain); resp.StatusCode != http.StatusOK {
		t.Fatalf("the unmappable request: %d, want 200 (quarantined)", resp.StatusCode)
	}
	qs, err := tr.spool.QuarantineList("", 0)
	must(t, err)
	if len(qs) != 1 || qs[0].Key != "dead-k" {
		t.Fatalf("quarantined: %+v, want one stored with key dead-k", qs)
	}
	waitFor(t, seedWait, "dead-k dead and wait-k tried", func() bool {
		// The backlog too: ok-k's answer is recorded before its delivery is.
		st := laneStats(tr, "dest")
		p, d := tr.Backlog()
		return st.Dead == 1 && st.HeldKeys == 1 && len(rec.requests()) == 3 && p == 3 && d == 1
	})

	var answer struct{ Events, Deliveries, Pending, Quarantined int }
	if code := adminDo(t, tr, http.MethodDelete, "/admin/keys/plain/dead-k", &answer); code != http.StatusOK ||
		answer.Events != 2 || answer.Deliveries != 2 || answer.Pending != 2 || answer.Quarantined != 1 {
		t.Fatalf("erase dead-k: %d %+v; want 2 events, 2 deliveries both pending, 1 quarantined", code, answer)
	}
	st := laneStats(tr, "dest")
	if st.Pending != 1 || st.Dead != 0 || st.HeldKeys != 0 {
		t.Errorf("after erasing dead-k: %+v; want wait-k's delivery only", st)
	}
	if code := adminDo(t, tr, http.MethodDelete, "/admin/keys/plain/wait-k", &answer); code != http.StatusOK || answer.Pending != 1 {
		t.Fatalf("erase wait-k: %d %+v; want 1 pending", code, answer)
	}
	if p, d := tr.Backlog(); p != 0 || d != 0 {
		t.Errorf("backlog after both erasures: %d pending, %d dead; want none", p, d)
	}
	// Nothing of the erased keys is sent after a restart either.
	n := len(rec.requests())
	tr = tr.restart()
	if p, d := tr.Backlog(); p != 0 || d != 0 {
		t.Errorf("backlog after a restart: %d pending, %d dead; want none", p, d)
	}
	if got := len(rec.requests()); got != n {
		t.Errorf("%d requests sent after the erasure", got-n)
	}
}

// TestPrivacyRotation: a relay restarted with a new privacy.key and the old
// one in previous_keys re-wraps every data key in the background, with its
// progress in GET /admin/privacy and the metrics; afterwards the old key can
// go, and every event is still read. With the old key alone, nothing opens.
func TestPrivacyRotation(t *testing.T) {
	oldKey, newKey := newDataKey(t), newDataKey(t)
	t.Setenv("HOOKRELAY_TEST_DATA_KEY", oldKey)
	t.Setenv("HOOKRELAY_TEST_DATA_KEY_OLD", oldKey)
	rec := newRecorder(t, nil)
	base := relayYAML(rec.srv.URL, "")
	tr := startRelay(t, base+"privacy: { key: env:HOOKRELAY_TEST_DATA_KEY }\n", map[string]string{"plain": plainProvider})
	var st struct {
		Enabled      bool   `json:"enabled"`
		MasterKeyID  string `json:"master_key_id"`
		PreviousKeys int    `json:"previous_keys"`
		Rotation     *struct {
			State              string
			Rewrapped, Pending int
		}
	}
	adminDo(t, tr, http.MethodGet, "/admin/privacy", &st)
	firstID := st.MasterKeyID
	if !st.Enabled || len(firstID) != 16 || st.Rotation != nil {
		t.Fatalf("GET /admin/privacy: %+v", st)
	}
	const keys = 5
	for i := range keys {
		must(t, tr.ingestAt("/in/plain", `{"key":"k`+strconv.Itoa(i)+`","type":"t","n":`+strconv.Itoa(i)+`}`))
	}
	waitFor(t, seedWait, "deliveries", func() bool { return len(rec.delivered(t)) == keys })
	var ids []string
	for _, ev := range rec.delivered(t) {
		ids = append(ids, ev["id"].(string))
	}
	tr.stop()

	// Rotate: the new key seals, the old one is still read.
	t.Setenv("HOOKRELAY_TEST_DATA_KEY", newKey)
	must(t, os.WriteFile(filepath.Join(tr.dir, "relay.yaml"), []byte(base+
		"privacy: { key: env:HOOKRELAY_TEST_DATA_KEY, previous_keys: [env:HOOKRELAY_TEST_DATA_KEY_OLD] }\n"), 0o644))
	tr = openRelay(t, tr.dir)
	waitFor(t, seedWait, "the rotation done", func() bool {
		adminDo(t, tr, http.MethodGet, "/admin/privacy", &st)
		return st.Rotation != nil && st.Rotation.State == "done"
	})
	if st.MasterKeyID == firstID || st.PreviousKeys != 1 || st.Rotation.Rewrapped != keys || st.Rotation.Pending != 0 {
		t.Errorf("after the rotation: %+v %+v; want a new master key id, %d re-wrapped, none pending", st, st.Rotation, keys)
	}
	req, err := http.NewRequest(http.MethodGet, tr.Admin.URL+"/metrics", nil)
	must(t, err)
	resp, err := http.DefaultClient.Do(req)
	must(t, err)
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"hookrelay_privacy_enabled 1", "hookrelay_privacy_rewrapped_keys 5", "hookrelay_privacy_pending_keys 0"} {
		if !bytes.Contains(metrics, []byte(want+"\n")) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	tr.stop()

	// The old key removed: everything still opens.
	must(t, os.WriteFile(filepath.Join(tr.dir, "relay.yaml"), []byte(base+"privacy: { key: env:HOOKRELAY_TEST_DATA_KEY }\n"), 0o644))
	tr = openRelay(t, tr.dir)
	for _, id := range ids {
		if code := adminDo(t, tr, http.MethodGet, "/admin/events/"+id, nil); code != http.StatusOK {
			t.Errorf("event %s after the rotation, without the old key: %d", id, code)
		}
	}
	tr.stop()

	// The old key alone no longer opens what the new one wraps.
	t.Setenv("HOOKRELAY_TEST_DATA_KEY", oldKey)
	tr = openRelay(t, tr.dir)
	if code := adminDo(t, tr, http.MethodGet, "/admin/events/"+ids[0], nil); code == http.StatusOK {
		t.Errorf("event %s opened with the previous master key alone", ids[0])
	}
}

// TestPrivacyConfig: privacy.key is a relay.yaml secret (missing: an error
// with its line), must be 32 bytes of base64 (the error never quotes it);
// the keystore defaults to keys.db beside the spool and a relative one is
// relative to relay.yaml; without the block, check and serve have a warning
// to give.
func TestPrivacyConfig(t *testing.T) {
	dir := t.TempDir()
	load := func(privacy string) (*Config, error) {
		writeConfig(t, dir, "listen: 127.0.0.1:18080\nadmin: { listen: 127.0.0.1:19090 }\nspool: { path: ./data/spool.db }\n"+
			privacy+"destinations:\n  dest: { url: http://127.0.0.1:1/x }\n", nil)
		return Load(filepath.Join(dir, "relay.yaml"), true)
	}
	cfg, err := load("")
	must(t, err)
	if cfg.Privacy != nil || cfg.PrivacyOff() == "" || !strings.Contains(cfg.PrivacyOff(), "nothing is encrypted at rest") {
		t.Errorf("without privacy: %+v, warning %q", cfg.Privacy, cfg.PrivacyOff())
	}
	if _, err := load("privacy: { key: env:HOOKRELAY_TEST_UNSET_DATA_KEY }\n"); err == nil ||
		!strings.Contains(err.Error(), "relay.yaml:4: privacy.key: ") || !strings.Contains(err.Error(), "HOOKRELAY_TEST_UNSET_DATA_KEY") {
		t.Errorf("a missing privacy.key secret: %v", err)
	}
	const notAKey = "c2hvcnQtc2VjcmV0LXZhbHVl" // "short-secret-value": 18 bytes
	t.Setenv("HOOKRELAY_TEST_DATA_KEY", notAKey)
	if _, err := load("privacy:\n  key: env:HOOKRELAY_TEST_DATA_KEY\n"); err == nil ||
		!strings.Contains(err.Error(), "relay.yaml:5: privacy.key: ") || strings.Contains(err.Error(), notAKey) || strings.Contains(err.Error(), "short-secret") {
		t.Errorf("a short privacy.key: %v", err)
	}
	if _, err := load("privacy: { keystore: ./k.db }\n"); err == nil || !strings.Contains(err.Error(), "privacy.key: required") {
		t.Errorf("privacy without key: %v", err)
	}
	t.Setenv("HOOKRELAY_TEST_DATA_KEY", newDataKey(t))
	cfg, err = load("privacy: { key: env:HOOKRELAY_TEST_DATA_KEY }\n")
	must(t, err)
	if want := filepath.Join(dir, "data", "keys.db"); cfg.Privacy.Keystore != want || cfg.PrivacyOff() != "" {
		t.Errorf("default keystore %q, want %q beside the spool", cfg.Privacy.Keystore, want)
	}
	cfg, err = load("privacy: { key: env:HOOKRELAY_TEST_DATA_KEY, keystore: ./secrets/keys.db }\n")
	must(t, err)
	if want := filepath.Join(dir, "secrets", "keys.db"); cfg.Privacy.Keystore != want {
		t.Errorf("keystore %q, want %q (relative to relay.yaml)", cfg.Privacy.Keystore, want)
	}
	if on := cfg.PrivacyOn(); !strings.Contains(on, "master key id ") || strings.Contains(on, os.Getenv("HOOKRELAY_TEST_DATA_KEY")) {
		t.Errorf("PrivacyOn: %q", on)
	}
}

// TestPrivacyOffSpoolHoldsClear is the scans' control: without privacy: the
// same canary is found in the raw spool file, so a scan that finds none
// with privacy on is not blind.
func TestPrivacyOffSpoolHoldsClear(t *testing.T) {
	rec := newRecorder(t, nil)
	tr := startRelay(t, relayYAML(rec.srv.URL, ""), map[string]string{"plain": plainProvider})
	if tr.keys != nil || tr.privacyState().Enabled {
		t.Fatal("privacy on without a privacy: block")
	}
	must(t, tr.ingestAt("/in/plain", `{"key":"k","type":"t","ssn":"193101017771"}`))
	waitFor(t, seedWait, "the delivery", func() bool { return len(rec.delivered(t)) == 1 })
	b, err := spoolFile(tr.dir)
	must(t, err)
	if !bytes.Contains(b, []byte("193101017771")) {
		t.Error("without privacy the canary is not in the spool file: the scan cannot see plaintext")
	}
}
