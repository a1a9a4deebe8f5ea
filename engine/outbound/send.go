package outbound

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-retryablehttp"

	"github.com/hookrelay/hookrelay/transforms"
)

// Message is one event as a delivery sends it: the spooled event's
// identifiers, its envelope and its raw body. The templates' view of them
// is parsed on the first send that needs it and kept: a Message reused for
// the event's other destinations and its retries is not parsed again. Use
// it by pointer; sends may share it concurrently.
type Message struct {
	ID, IdempotencyID, Provider, Type string
	Envelope, Raw                     []byte

	parse sync.Once
	event *transforms.Event // the envelope parsed; nil when it is not an event
	body  any               // Raw parsed as JSON; nil when it is not JSON
	raw   string
	err   error
}

// parsed is the envelope and body as templates see them, parsed once.
// Templates read them and never change them.
func (m *Message) parsed() (*transforms.Event, any, string, error) {
	m.parse.Do(func() {
		var ev transforms.Event
		if err := json.Unmarshal(m.Envelope, &ev); err != nil {
			m.err = fmt.Errorf("stored event: %w", err)
			return
		}
		m.event, m.raw = &ev, string(m.Raw)
		_ = json.Unmarshal(m.Raw, &m.body)
	})
	return m.event, m.body, m.raw, m.err
}

// Result is one attempt as it is recorded, its texts already masked.
type Result struct {
	At         time.Time
	Duration   time.Duration
	Status     int    // 0: no answer
	Response   string // the answer's first ResponseKept bytes
	Error      string
	RetryAfter time.Duration // the destination's own Retry-After, 0 when none
	// Err is why no answer came: a *RenderError when no request was made,
	// otherwise the transport's error (unmasked: for Classify, not to show).
	Err error
}

// ResponseKept is how much of an answer an attempt records.
const ResponseKept = 1024

// Send makes attempt number `attempt` of m to e with c, a single attempt
// (NewClient): retries are not its business, the caller owns their schedule.
func (e *Endpoint) Send(c *retryablehttp.Client, m *Message, attempt int) Result {
	start := time.Now()
	res := Result{At: start.UTC()}
	req, err := e.request(m, attempt)
	if err != nil {
		// Our own configuration cannot render this event: no use retrying.
		res.Error = MaskText(e.secrets, err.Error())
		res.Err = &RenderError{err}
		return res
	}
	ctx, cancel := context.WithTimeout(context.Background(), e.timeout)
	defer cancel()
	resp, err := c.Do(req.WithContext(ctx))
	res.Duration = time.Since(start)
	if err != nil {
		// A *url.Error quotes the URL, whose userinfo or query may hold a
		// credential; the record is stored, logged and shown.
		res.Error = MaskText(e.secrets, err.Error())
		res.Err = err
		return res
	}
	defer resp.Body.Close()
	// Read past what is kept, so that a credential across the cut is
	// masked whole rather than kept in part.
	head, _ := io.ReadAll(io.LimitReader(resp.Body, 2*ResponseKept))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // lets the connection be reused
	res.Status = resp.StatusCode
	// A refusal may echo the credentials it was sent.
	res.Response = e.secrets.Replace(string(head))
	if len(res.Response) > ResponseKept {
		res.Response = res.Response[:ResponseKept]
	}
	res.RetryAfter = RetryAfter(resp)
	return res
}

// request renders m as e wants it.
func (e *Endpoint) request(m *Message, attempt int) (*retryablehttp.Request, error) {
	var env *transforms.Env
	if e.needEnv {
		ev, body, raw, err := m.parsed()
		if err != nil {
			return nil, err
		}
		env = &transforms.Env{Event: ev, Body: body, Raw: raw, Provider: m.Provider, Now: time.Now()}
	}
	var body []byte
	switch e.bodyMode {
	case "envelope":
		body = m.Envelope
	case "raw":
		body = m.Raw
	default:
		v, err := e.body.Run(env)
		if err != nil {
			return nil, fmt.Errorf("body: %w", err)
		}
		if body, err = json.Marshal(v); err != nil {
			return nil, fmt.Errorf("body: %w", err)
		}
	}
	rawURL, err := e.url.Execute(env)
	if err != nil {
		return nil, fmt.Errorf("url: %w", err)
	}
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, errors.New("url: not an http(s) URL after templating")
	}
	req, err := retryablehttp.NewRequest(e.method, u.String(), bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	h := req.Header
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", "hookrelay")
	for _, t := range e.headers {
		v, err := t.Value.Execute(env)
		if err != nil {
			return nil, fmt.Errorf("headers.%s: %w", t.Name, err)
		}
		h.Set(t.Name, v)
	}
	h.Set("Idempotency-Key", m.IdempotencyID)
	h.Set("X-Hookrelay-Event-Id", m.ID)
	h.Set("X-Hookrelay-Provider", m.Provider)
	h.Set("X-Hookrelay-Event-Type", m.Type)
	h.Set("X-Hookrelay-Attempt", strconv.Itoa(attempt))
	if e.auth != nil {
		e.auth.Apply(req.Request)
	}
	if err := CheckHeaders(h); err != nil {
		return nil, err
	}
	if e.signer != nil {
		if err := e.signer.sign(h, m.ID, time.Now(), body); err != nil {
			return nil, fmt.Errorf("sign: %w", err)
		}
	}
	return req, nil
}
