// Package benchkit is what engine's benchmarks and the load harness
// (engine/loadtest) both send and measure: the benchmark provider, its signed
// requests, and the process's CPU clock. It is written once here so that the
// micro-benchmarks that stay beside engine's code and the harness measure the
// same requests.
//
// It may import the standard library only; only tests import it.
package benchkit

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
)

// Secret signs the benchmark requests; Provider verifies them.
const Secret = "bench-secret"

// Provider is providers.d/example.yaml with a literal secret, routed to
// the test destination "dest".
const Provider = `
name: example
paths: [/in/example]
methods: [POST]
max_body: 256KiB
verify:
  - kind: hmac
    secret: ` + Secret + `
    algorithm: sha256
    signed: "{header.X-Timestamp}.{body}"
    signature: { header: X-Signature, encoding: hex, prefix: "sha256=" }
    timestamp: { header: X-Timestamp, format: unix, tolerance: 5m }
event:
  id: body.id ?? ""
  key: body.key
  type: body.type
  types:
    order.paid: payment.completed
  data:
    payload: body.data
routes:
  - to: [dest]
dedup: 72h
respond: { status: 200, body: '{"success":true}', content_type: application/json }
`

// Request is one pre-built request.
type Request struct {
	Body []byte
	Sig  string // X-Signature; "" sends none
}

// Requests builds n signed requests, numbered from `from`, each with
// its own event id (so that dedup never answers early) and one of 1024
// ordering keys.
func Requests(from, n int, ts string) []Request {
	reqs := make([]Request, n)
	for j := range reqs {
		i := from + j
		body := fmt.Appendf(nil, `{"id":"evt_%012d","key":"order-%04d","type":"order.paid",`+
			`"created_at":"2026-11-25T09:59:59Z","data":{"amount":10000,"currency":"EUR",`+
			`"customer":{"id":"cus_8f3a2b","email":"jane.doe@example.com"},"items":[{"sku":"SKU-1001",`+
			`"qty":2,"price":2500},{"sku":"SKU-2002","qty":1,"price":5000}],"status":"paid",`+
			`"reference":"INV-2026-000123"}}`, i, i%1024)
		reqs[j] = Request{Body: body, Sig: "sha256=" + HMACHex(Secret, ts+"."+string(body))}
	}
	return reqs
}

// HMACHex is the hex HMAC-SHA256 of msg under secret.
func HMACHex(secret, msg string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(msg))
	return hex.EncodeToString(m.Sum(nil))
}
