package engine

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestClientHangUpIsNotASpoolFailure: a lender that hangs up once its body is
// in (net/http then cancels the request's context) makes the spool append
// give up; that is the client's doing, not a spool failure, and is not
// logged as an error. The listener cancels each request's context as the
// server does when the connection closes; with a canceled context the
// append fails often (the spool's queue races the context), so twenty
// requests all but surely hit it.
func TestClientHangUpIsNotASpoolFailure(t *testing.T) {
	rec := newRecorder(t, nil)
	dir := t.TempDir()
	writeConfig(t, dir, relayYAML(rec.srv.URL, ""), map[string]string{"plain": plainProvider})
	logs := &syncBuffer{}
	tr := openRelayLogging(t, dir, logs) // the edge takes its logger at Open
	gone := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		ctx, cancel := context.WithCancel(req.Context())
		cancel() // the client hung up
		tr.IngestHandler().ServeHTTP(w, req.WithContext(ctx))
	}))
	t.Cleanup(gone.Close)
	for i := range 20 {
		req, err := http.NewRequest(http.MethodPost, gone.URL+"/in/plain", strings.NewReader(`{"id":"h`+string(rune('a'+i))+`","key":"k","type":"t"}`))
		must(t, err)
		for k, v := range authPlain {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		must(t, err)
		resp.Body.Close()
	}
	out := logs.String()
	if strings.Contains(out, "spool append failed") || strings.Contains(out, "level=ERROR") {
		t.Errorf("a client's hang-up was logged as a failure:\n%s", out)
	}
	if !strings.Contains(out, "client closed the connection") {
		t.Errorf("no request was abandoned (the test did not hit the race in 20 tries?):\n%s", out)
	}
}
