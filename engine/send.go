package engine

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/hashicorp/go-cleanhttp"
	"github.com/hashicorp/go-retryablehttp"
	"golang.org/x/net/http/httpguts"

	"github.com/hookrelay/hookrelay/engine/spool"
	"github.com/hookrelay/hookrelay/internal/redact"
	"github.com/hookrelay/hookrelay/transforms"
)

// sender makes single delivery attempts. Retries are not its business: the
// spool owns their schedule so that they survive restarts, so the
// retryablehttp client is set to never retry on its own.
type sender struct {
	client *retryablehttp.Client
}

// responseKept is how much of a response body an attempt records.
const responseKept = 1024

func newSender() *sender {
	c := singleAttemptClient()
	c.HTTPClient.Transport.(*http.Transport).MaxIdleConnsPerHost = 256
	return &sender{client: c}
}

// singleAttemptClient is the HTTP client of everything the relay sends
// (deliveries, registrations, polls): one attempt per call, since the caller
// owns the retry schedule (the spool, the registration backoff, the next
// poll); and a redirect is answered as it is, not followed: following a
// 301-303 turns a POST into a GET without the body, whose 2xx would count as
// success, and a request and its credentials must not go elsewhere.
func singleAttemptClient() *retryablehttp.Client {
	hc := cleanhttp.DefaultPooledClient()
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	c := retryablehttp.NewClient()
	c.HTTPClient = hc
	c.Logger = nil
	c.RetryMax = 0
	c.CheckRetry = func(context.Context, *http.Response, error) (bool, error) { return false, nil }
	c.ErrorHandler = retryablehttp.PassthroughErrorHandler
	return c
}

// renderError is send's error when dest cannot render the event (a template
// or body expression fails, or the URL is not http): no request was made, and
// another attempt would render it the same way.
type renderError struct{ err error }

func (e *renderError) Error() string { return e.err.Error() }
func (e *renderError) Unwrap() error { return e.err }

// send makes attempt number `attempt` of ev to dest. It returns the recorded
// attempt, the destination's Retry-After (0 when none), and the error when no
// response came: a *renderError when no request was made, otherwise the
// transport's.
func (s *sender) send(dest *Destination, ev *spool.Event, attempt int) (spool.Attempt, time.Duration, error) {
	start := time.Now()
	att := spool.Attempt{At: start.UTC()}
	req, err := s.request(dest, ev, attempt)
	if err != nil {
		// Our own configuration cannot render this event: no use retrying.
		att.Error = redact.Text(dest.secrets.Replace(err.Error()))
		return att, 0, &renderError{err}
	}
	ctx, cancel := context.WithTimeout(context.Background(), dest.timeout)
	defer cancel()
	resp, err := s.client.Do(req.WithContext(ctx))
	att.DurationMS = time.Since(start).Milliseconds()
	if err != nil {
		// A *url.Error quotes the URL, whose userinfo or query may hold a
		// credential; the record is stored, logged and shown.
		att.Error = redact.Text(dest.secrets.Replace(err.Error()))
		return att, 0, err
	}
	defer resp.Body.Close()
	// Read past what is kept, so that a credential across the cut is
	// masked whole rather than kept in part.
	head, _ := io.ReadAll(io.LimitReader(resp.Body, 2*responseKept))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // lets the connection be reused
	att.Status = resp.StatusCode
	// A refusal may echo the credentials it was sent.
	att.Response = dest.secrets.Replace(string(head))
	if len(att.Response) > responseKept {
		att.Response = att.Response[:responseKept]
	}
	var retryAfter time.Duration
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		// DefaultBackoff with a zero minimum is just its Retry-After parser.
		retryAfter = retryablehttp.DefaultBackoff(0, dest.retry.max, 0, resp)
	}
	return att, retryAfter, nil
}

// request renders ev as dest wants it.
func (s *sender) request(dest *Destination, ev *spool.Event, attempt int) (*retryablehttp.Request, error) {
	var env *transforms.Env
	needEnv := dest.bodyMode == "expr" || !dest.url.Constant()
	for _, h := range dest.headers {
		needEnv = needEnv || !h.value.Constant()
	}
	if needEnv {
		var e transforms.Event
		if err := json.Unmarshal(ev.Envelope, &e); err != nil {
			return nil, fmt.Errorf("stored event: %w", err)
		}
		env = &transforms.Env{Event: &e, Provider: ev.Provider, Now: time.Now()}
		_ = json.Unmarshal(ev.Raw, &env.Body)
		env.Raw = string(ev.Raw)
	}
	var body []byte
	switch dest.bodyMode {
	case "envelope":
		body = ev.Envelope
	case "raw":
		body = ev.Raw
	default:
		v, err := dest.body.Run(env)
		if err != nil {
			return nil, fmt.Errorf("body: %w", err)
		}
		if body, err = json.Marshal(v); err != nil {
			return nil, fmt.Errorf("body: %w", err)
		}
	}
	rawURL, err := dest.url.Execute(env)
	if err != nil {
		return nil, fmt.Errorf("url: %w", err)
	}
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, errors.New("url: not an http(s) URL after templating")
	}
	if a := dest.auth; a != nil && a.Kind == "query" {
		q := u.Query() // keeps the URL's own query string
		q.Set(a.Name, a.APIKey)
		u.RawQuery = q.Encode()
	}
	req, err := retryablehttp.NewRequest(dest.method, u.String(), bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	h := req.Header
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", "hookrelay")
	for _, t := range dest.headers {
		v, err := t.value.Execute(env)
		if err != nil {
			return nil, fmt.Errorf("headers.%s: %w", t.name, err)
		}
		h.Set(t.name, v)
	}
	h.Set("Idempotency-Key", ev.IdempotencyID)
	h.Set("X-Hookrelay-Event-Id", ev.ID)
	h.Set("X-Hookrelay-Provider", ev.Provider)
	h.Set("X-Hookrelay-Event-Type", ev.Type)
	h.Set("X-Hookrelay-Attempt", strconv.Itoa(attempt))
	if a := dest.auth; a != nil {
		switch a.Kind {
		case "basic":
			req.SetBasicAuth(a.Username, a.Password)
		case "bearer":
			scheme := "Bearer"
			if a.Scheme != nil {
				scheme = *a.Scheme
			}
			if scheme == "" {
				h.Set("Authorization", a.Token)
			} else {
				h.Set("Authorization", scheme+" "+a.Token)
			}
		case "header":
			h.Set(a.Name, a.APIKey)
		}
	}
	for name, v := range h {
		// net/http would refuse a control character on every attempt, as if
		// the network failed: say what it is, once.
		if !httpguts.ValidHeaderFieldValue(v[0]) {
			return nil, fmt.Errorf("header %s: the value holds a control character", name)
		}
	}
	if dest.signKey != nil {
		signStandard(h, dest.signKey, ev.ID, time.Now(), body)
	}
	return req, nil
}

// signStandard adds the Standard Webhooks headers: an HMAC-SHA256 over
// "id.timestamp.body", base64, as "v1,<sig>".
func signStandard(h http.Header, key []byte, id string, now time.Time, body []byte) {
	ts := strconv.FormatInt(now.Unix(), 10)
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + ts + "."))
	mac.Write(body)
	h.Set("webhook-id", id)
	h.Set("webhook-timestamp", ts)
	h.Set("webhook-signature", "v1,"+base64.StdEncoding.EncodeToString(mac.Sum(nil)))
}
