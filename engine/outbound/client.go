package outbound

import (
	"context"
	"net/http"

	"github.com/hashicorp/go-retryablehttp"

	"github.com/hookrelay/hookrelay/internal/httpout"
)

// NewClient is the HTTP client of everything the relay sends (deliveries,
// registrations, polls): one attempt per call, since the caller owns the
// retry schedule (the spool, the registration backoff, the next poll); and a
// redirect is answered as it is, not followed: following a 301-303 turns a
// POST into a GET without the body, whose 2xx would count as success, and a
// request and its credentials must not go elsewhere. idlePerHost is how many
// idle connections it keeps per host; 0 keeps go-cleanhttp's default.
func NewClient(idlePerHost int) *retryablehttp.Client {
	c := retryablehttp.NewClient()
	c.HTTPClient = httpout.Client(idlePerHost, httpout.NoRedirect)
	c.Logger = nil
	c.RetryMax = 0
	c.CheckRetry = func(context.Context, *http.Response, error) (bool, error) { return false, nil }
	c.ErrorHandler = retryablehttp.PassthroughErrorHandler
	return c
}
