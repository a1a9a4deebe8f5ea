package provider

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/hookrelay/hookrelay/transforms"
)

// ErrPolledTooLarge is the error of a polled event whose envelope is larger
// than the provider's max_body: it is not spooled (a webhook this large
// would have had 413).
var ErrPolledTooLarge = errors.New("polled event larger than max_body")

// BuildPolled maps a status answer, polled for key at at, into the event to
// spool, as Build does for a webhook: with mapping (poll.event), routed by
// p's routes, its envelope at most maxEvent bytes. The Result is accepted
// with the event, rejected (413, ErrPolledTooLarge) for one too large, or
// quarantined for one our configuration cannot map; the poller stores only
// the first. sum identifies the mapped type and data: an answer whose sum
// is the key's last one makes no event.
func (p *Pipeline) BuildPolled(mapping *transforms.Mapping, maxEvent int64, key string, resp *transforms.Response, body []byte, at time.Time) (res Result, sum string) {
	unmappable := func(err error) (Result, string) {
		return Result{Outcome: Quarantined, Status: p.RespondStatus, Err: err}, ""
	}
	env := &transforms.Env{Key: key, Provider: p.Name, Now: at, Response: resp}
	raw := json.RawMessage(body)
	if resp.JSON == nil {
		raw, _ = json.Marshal(string(body))
	}
	te := &transforms.Event{
		ID: ulid.Make().String(), Provider: p.Name, Source: "poll",
		ReceivedAt: at.UTC().Truncate(time.Millisecond), Raw: raw,
	}
	lenderID, err := mapping.Map(env, te)
	if err != nil {
		return unmappable(WithoutValues(err, env))
	}
	if te.Type == "" {
		return unmappable(errors.New("event.type: gave an empty type"))
	}
	data, err := json.Marshal(te.Data) // encoding/json sorts map keys: canonical
	if err != nil {
		return unmappable(fmt.Errorf("event.data: %w", err))
	}
	h := sha256.New()
	for _, part := range []string{p.Name, te.Key, te.Type} {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	h.Write(data)
	sum = hex.EncodeToString(h.Sum(nil))
	if lenderID != "" {
		te.IdempotencyID = p.Name + ":" + lenderID
	} else {
		te.IdempotencyID = p.Name + ":" + sum
	}
	ev, err := p.spoolable(env, te, body)
	if err != nil {
		return unmappable(err)
	}
	if int64(len(ev.Envelope)) > maxEvent {
		return Result{Outcome: Rejected, Status: http.StatusRequestEntityTooLarge,
			Err: fmt.Errorf("%w: %d bytes, max_body is %d", ErrPolledTooLarge, len(ev.Envelope), maxEvent)}, ""
	}
	return Result{Outcome: Accepted, Status: p.RespondStatus, Event: ev}, sum
}
