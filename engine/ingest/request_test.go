package ingest

import "testing"

// maxFuzzInput bounds each fuzzed file: larger inputs only slow the fuzzer
// down without reaching new code.
const maxFuzzInput = 16 << 10

// FuzzReadRequest reads arbitrary saved requests, raw HTTP or JSON.
func FuzzReadRequest(f *testing.F) {
	f.Add([]byte("POST /in/plain HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer t0ken\r\nContent-Length: 7\r\n\r\n{\"n\":1}"))
	f.Add([]byte("POST /in/x?a=1 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"))
	f.Add([]byte("GET / HTTP/1.0\r\n\r\n"))
	f.Add([]byte(`{"method":"POST","path":"/in/plain","headers":{"Authorization":"Bearer t0ken"},"body":{"id":"1","key":"k"}}`))
	f.Add([]byte(`{"path":"/in/plain","body":"raw text"}`))
	f.Add([]byte(`{"method":"BAD METHOD","path":"no-slash","body":[1,2,{"a":null}]}`))
	f.Add([]byte(` {"body":`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > maxFuzzInput {
			return
		}
		req, body, err := ReadRequest(data)
		if err != nil {
			return
		}
		if req == nil || req.URL == nil || req.Header == nil {
			t.Fatalf("no error and an incomplete request: %+v", req)
		}
		if len(body) > len(data) {
			t.Fatalf("body of %d bytes read from %d bytes", len(body), len(data))
		}
	})
}
