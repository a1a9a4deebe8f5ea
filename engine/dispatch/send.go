package dispatch

import (
	"time"

	"github.com/hashicorp/go-retryablehttp"

	"github.com/hookrelay/hookrelay/engine/outbound"
	"github.com/hookrelay/hookrelay/engine/spool"
)

// send makes attempt number `attempt` of msg to dest, a single attempt:
// retries are not the client's business (see New). It returns the recorded
// attempt, the destination's Retry-After (0 when none), and the error when
// no response came: an *outbound.RenderError when no request was made,
// otherwise the transport's.
func send(client *retryablehttp.Client, dest *Destination, msg *outbound.Message, attempt int) (spool.Attempt, time.Duration, error) {
	res := dest.out.Send(client, msg, attempt)
	att := spool.Attempt{At: res.At, DurationMS: res.Duration.Milliseconds(), Status: res.Status,
		Response: res.Response, Error: res.Error}
	return att, res.RetryAfter, res.Err
}
