package ingest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/hookrelay/hookrelay/engine/provider"
	"github.com/hookrelay/hookrelay/verifiers"
)

// The requests that `hookrelay try`, `test`, `sign` and `send` work on:
// built, read from a saved file, and signed as a provider's verifiers expect.

// NewRequest builds the request that `try`, `test` and `sign` work on.
func NewRequest(method, path string, headers map[string]string, body []byte) (*http.Request, error) {
	if !strings.HasPrefix(path, "/") {
		return nil, fmt.Errorf("request path %q must start with /", path)
	}
	req, err := http.NewRequest(method, "http://127.0.0.1"+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	if req.Header.Get("Content-Type") == "" && json.Valid(body) {
		req.Header.Set("Content-Type", "application/json")
	}
	req.RemoteAddr = "127.0.0.1:50000"
	return req, nil
}

// ReadRequest reads a saved request: raw HTTP/1.1 text (as `hookrelay sign`
// prints it), or JSON {"method", "path", "headers", "body"} where body is a
// string or any JSON value (sent compact).
func ReadRequest(data []byte) (*http.Request, []byte, error) {
	if trimmed := bytes.TrimSpace(data); len(trimmed) > 0 && trimmed[0] == '{' {
		var j struct {
			Method  string            `json:"method"`
			Path    string            `json:"path"`
			Headers map[string]string `json:"headers"`
			Body    json.RawMessage   `json:"body"`
		}
		if err := json.Unmarshal(trimmed, &j); err != nil {
			return nil, nil, fmt.Errorf("request: %w", err)
		}
		var body []byte
		var s string
		if json.Unmarshal(j.Body, &s) == nil {
			body = []byte(s)
		} else if len(j.Body) > 0 {
			var buf bytes.Buffer
			if err := json.Compact(&buf, j.Body); err != nil {
				return nil, nil, err
			}
			body = buf.Bytes()
		}
		if j.Method == "" {
			j.Method = http.MethodPost
		}
		req, err := NewRequest(j.Method, j.Path, j.Headers, body)
		return req, body, err
	}
	req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(data)))
	if err != nil {
		return nil, nil, fmt.Errorf("request: not JSON and not raw HTTP: %w", err)
	}
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return nil, nil, err
	}
	req.RemoteAddr = "127.0.0.1:50000"
	return req, body, nil
}

// SignRequest signs req as p's verifiers expect and returns the signed
// request and its body (a jws verifier may put the token into the body).
func SignRequest(p *provider.Provider, req *http.Request, body []byte, now time.Time, jwsKey []byte) (*http.Request, []byte, error) {
	params, status := Match(p, req)
	if status != 0 {
		return nil, nil, fmt.Errorf("%s %s: %s for provider %s", req.Method, req.URL.Path, http.StatusText(status), p.Name)
	}
	vr := &verifiers.Request{
		Method: req.Method, Path: req.URL.Path, Header: req.Header.Clone(), Query: req.URL.Query(),
		Params: params, Body: body, Received: now,
	}
	if err := p.Sign(vr, jwsKey); err != nil {
		return nil, nil, err
	}
	u := *req.URL
	u.RawQuery = vr.Query.Encode()
	signed, err := NewRequest(req.Method, u.RequestURI(), nil, vr.Body)
	if err != nil {
		return nil, nil, err
	}
	signed.Header = vr.Header
	return signed, vr.Body, nil
}
