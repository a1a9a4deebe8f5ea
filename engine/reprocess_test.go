package engine

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/hookrelay/hookrelay/engine/admin"
	"github.com/hookrelay/hookrelay/engine/spool"
)

// boundedReader is the spool as the admin API reads it, recording the
// limit of every quarantine listing.
type boundedReader struct {
	admin.Reader
	limits []int
}

func (b *boundedReader) QuarantineList(after string, limit int) ([]*spool.Quarantined, error) {
	b.limits = append(b.limits, limit)
	return b.Reader.QuarantineList(after, limit)
}

func (b *boundedReader) QuarantineOldest(after string, limit int) ([]*spool.Quarantined, error) {
	b.limits = append(b.limits, limit)
	return b.Reader.QuarantineOldest(after, limit)
}

// orderedRelay records the order reprocess hands quarantined requests over.
type orderedRelay struct {
	admin.Relay
	ids []string
}

func (o *orderedRelay) Reprocess(q *spool.Quarantined) (string, error) {
	o.ids = append(o.ids, q.ID)
	return o.Relay.Reprocess(q)
}

// TestReprocessPagesThroughTheQuarantine: POST /admin/quarantine/reprocess
// reads the quarantine a bounded page at a time, never all of it at once,
// and still hands every request over once, oldest first, across pages.
func TestReprocessPagesThroughTheQuarantine(t *testing.T) {
	s := newSink(t, nil)
	tr := startRelay(t, adminRelayYAML(s.srv.URL, ""), map[string]string{"plain": plainProvider})
	const n = 230 // more than two pages
	for i := range n {
		if resp := tr.post("/in/plain", fmt.Sprintf(`{"ref":"R%d","type":"t","n":%d}`, i, i), authPlain); resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d answered %d, want 200 (quarantined: no key)", i, resp.StatusCode)
		}
	}
	tr.writeProvider("plain", strings.Replace(plainProvider, "key: body.key", "key: body.ref", 1))
	tr.do("POST", "/admin/reload", "", 200, nil)

	rd := &boundedReader{Reader: tr.spool}
	rl := &orderedRelay{Relay: adminRelay{tr.Relay}}
	srv := httptest.NewServer(admin.Handler(rl, rd, tr.log, nil))
	defer srv.Close()
	req, err := http.NewRequest(http.MethodPost, srv.URL+"/admin/quarantine/reprocess", nil)
	must(t, err)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	must(t, err)
	defer resp.Body.Close()
	var res struct{ Reprocessed int }
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("reprocess: %d %v", resp.StatusCode, err)
	}
	if res.Reprocessed != n {
		t.Errorf("reprocessed %d, want %d", res.Reprocessed, n)
	}
	for _, l := range rd.limits {
		if l <= 0 || l > 1000 {
			t.Errorf("the quarantine read with limit %d, want a bounded page (all limits: %v)", l, rd.limits)
		}
	}
	if len(rl.ids) != n || !slices.IsSorted(rl.ids) || len(slices.Compact(slices.Clone(rl.ids))) != n {
		t.Errorf("handed over %d requests, sorted %v; want each of %d once, oldest first", len(rl.ids), slices.IsSorted(rl.ids), n)
	}
	left, err := tr.spool.QuarantineList("", 0)
	must(t, err)
	if len(left) != 0 {
		t.Errorf("%d left in the quarantine, want none", len(left))
	}
}
