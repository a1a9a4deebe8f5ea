package engine

import (
	"time"

	"github.com/hashicorp/go-retryablehttp"

	"github.com/hookrelay/hookrelay/engine/outbound"
	"github.com/hookrelay/hookrelay/engine/spool"
)

// sender makes single delivery attempts. Retries are not its business: the
// spool owns their schedule so that they survive restarts, so the
// retryablehttp client is set to never retry on its own.
type sender struct {
	client *retryablehttp.Client
}

func newSender() *sender { return &sender{client: outbound.NewClient(256)} }

// send makes attempt number `attempt` of ev to dest. It returns the recorded
// attempt, the destination's Retry-After (0 when none), and the error when no
// response came: an *outbound.RenderError when no request was made, otherwise
// the transport's.
func (s *sender) send(dest *Destination, ev *spool.Event, attempt int) (spool.Attempt, time.Duration, error) {
	res := dest.out.Send(s.client, &outbound.Message{
		ID: ev.ID, IdempotencyID: ev.IdempotencyID, Provider: ev.Provider, Type: ev.Type,
		Envelope: ev.Envelope, Raw: ev.Raw,
	}, attempt)
	att := spool.Attempt{At: res.At, DurationMS: res.Duration.Milliseconds(), Status: res.Status,
		Response: res.Response, Error: res.Error}
	return att, res.RetryAfter, res.Err
}
