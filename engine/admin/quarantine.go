package admin

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"

	"github.com/oklog/ulid/v2"

	"github.com/hookrelay/hookrelay/engine/spool"
)

func (r *api) listQuarantine(req *http.Request) (any, error) {
	n, err := limit(req, 50)
	if err != nil {
		return nil, err
	}
	return r.quarantineItems(req.URL.Query().Get("provider"), req.URL.Query().Get("cursor"), n)
}

// quarantineItems lists quarantined requests with credentials masked and
// the body as a hash (it may hold personal data).
func (r *api) quarantineItems(provider, cursor string, n int) (any, error) {
	items := []map[string]any{}
	next := cursor
	for {
		page, err := r.spool.QuarantineList(next, n)
		if err != nil {
			return nil, BadRequest(err.Error())
		}
		for _, q := range page {
			next = q.ID
			if provider != "" && q.Provider != provider {
				continue
			}
			items = append(items, r.quarantineView(q))
			if len(items) == n {
				return list{Items: items, NextCursor: q.ID}, nil
			}
		}
		if len(page) < n {
			return list{Items: items}, nil
		}
	}
}

// quarantineView is a quarantined request with credentials masked and the
// body as a hash (it may hold personal data).
func (r *api) quarantineView(q *spool.Quarantined) map[string]any {
	sum := sha256.Sum256(q.Body)
	return map[string]any{
		"id": q.ID, "provider": q.Provider, "reason": r.relay.MaskReason(q), "received_at": q.ReceivedAt, "status": "quarantined",
		"method": q.Method, "path": q.Path, "headers": r.relay.MaskHeaders(q.Provider, q.Header), "body_sha256": hex.EncodeToString(sum[:]),
		"body_bytes": len(q.Body),
	}
}

// showQuarantined is one quarantined request, as the quarantine list shows
// it: an id from `events list --status quarantined` for `events show`.
func (r *api) showQuarantined(req *http.Request) (any, error) {
	id := req.PathValue("id")
	if _, err := ulid.ParseStrict(id); err != nil {
		return nil, NotFound("no quarantined request " + id)
	}
	q, err := r.spool.Quarantined(id)
	if errors.Is(err, spool.ErrNotFound) {
		return nil, NotFound("no quarantined request " + id)
	}
	if err != nil {
		return nil, err
	}
	return r.quarantineView(q), nil
}

// reprocess runs quarantined requests through the current configuration
// (verification passed when they arrived); those that now map are spooled
// and leave the quarantine.
func (r *api) reprocess(req *http.Request) (any, error) {
	var f struct {
		IDs      []string `json:"ids"`
		Provider string   `json:"provider"`
	}
	if err := readBody(req, &f); err != nil {
		return nil, err
	}
	// The requests there when it starts: one that comes meanwhile waits
	// for the next reprocess, as it did when the whole list was read first.
	newest, err := r.spool.QuarantineList("", 1)
	if err != nil || len(newest) == 0 {
		return map[string]any{"reprocessed": 0, "failed": []failure{}}, err
	}
	last := newest[0].ID
	want := map[string]bool{}
	for _, id := range f.IDs {
		want[id] = true
	}
	done, failed := 0, []failure{}
	// Oldest first, so keys keep their order, a page at a time: the
	// quarantine may hold far more than memory should.
	for cursor := ""; ; {
		page, err := r.spool.QuarantineOldest(cursor, reprocessPage)
		if err != nil {
			return nil, err
		}
		for _, q := range page {
			if q.ID > last {
				return map[string]any{"reprocessed": done, "failed": failed}, nil
			}
			cursor = q.ID
			if (len(want) > 0 && !want[q.ID]) || (f.Provider != "" && q.Provider != f.Provider) {
				continue
			}
			why, err := r.relay.Reprocess(q)
			if err != nil {
				return nil, err
			}
			if why != "" {
				failed = append(failed, failure{q.ID, why})
				continue
			}
			done++
		}
		if len(page) < reprocessPage {
			return map[string]any{"reprocessed": done, "failed": failed}, nil
		}
	}
}

// reprocessPage is how many quarantined requests reprocess reads at a time.
var reprocessPage = 100

// failure is a quarantined request reprocess could not map, and why.
type failure struct {
	ID     string `json:"id"`
	Reason string `json:"reason"`
}
