package loadtest

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/hookrelay/hookrelay/engine/internal/benchkit"
)

// hotReq is one pre-built request of a lender.
type hotReq struct {
	path   string
	header http.Header
	body   []byte
}

// hotLender is a shipped provider, the secrets its file names, and how its
// lender signs a request.
type hotLender struct {
	name string
	env  map[string]string
	// reqs builds requests [from, to), signed at ts.
	reqs func(t *testing.T, from, to int, ts time.Time) []hotReq
	// rate is about the most requests per second (h) can take of these:
	// it sizes the pool of pre-built requests.
	rate int
}

const (
	hotNordiskaSecret = "nordiska-signing-secret-0123456789"
	hotNordiskaToken  = "nordiska-auth-token"
	hotKomparToken    = "kompar-token-xxxxx-yyyyy"
	hotKomparKey      = "0123456789abcdef0123456789abcdef"
	hotAvidaPassword  = "avida-basic-password"
)

func hotLenders() map[string]hotLender {
	return map[string]hotLender{
		"nordiska": {
			name: "nordiska",
			env:  map[string]string{"NORDISKA_SIGNING_SECRET": hotNordiskaSecret, "NORDISKA_AUTH_TOKEN": hotNordiskaToken},
			rate: 15000,
			reqs: func(_ *testing.T, from, to int, ts time.Time) []hotReq {
				stamp := ts.UTC().Format(time.RFC3339)
				out := make([]hotReq, 0, to-from)
				for i := from; i < to; i++ {
					// 1024 onboardings, each numbering its events from 1 in
					// the order they are sent.
					// Event ids as a lender makes them (UUIDs: in no order),
					// which is what the dedup index's writes cost;
					// HOOKRELAY_HOTPATH_IDS=ascending numbers them instead,
					// to measure that cost.
					id := hotUUID(i)
					if os.Getenv("HOOKRELAY_HOTPATH_IDS") == "ascending" {
						id = fmt.Sprintf("evt-%012d", i)
					}
					body := fmt.Appendf(nil, `{"eventId":"%s","onboardingId":"onb-%04d","eventType":"SIGNING_SESSION_CREATED",`+
						`"sequence":%d,"signingUrl":"https://sign.nordiska.example/session/%010d","engagementId":"eng-%04d"}`,
						id, i%1024, i/1024+1, i, i%1024)
					h := http.Header{}
					h.Set("Content-Type", "application/json")
					h.Set("X-Card-Onboarding-Timestamp", stamp)
					h.Set("X-Card-Onboarding-Signature", benchkit.HMACHex(hotNordiskaSecret, stamp+":"+string(body)))
					h.Set("Authorization", "Bearer "+hotNordiskaToken)
					out = append(out, hotReq{path: "/in/nordiska", header: h, body: body})
				}
				return out
			},
		},
		"kompar": {
			name: "kompar",
			env: map[string]string{"KOMPAR_WEBHOOK_TOKEN": hotKomparToken, "KOMPAR_AES_KEY": hotKomparKey,
				"RELAY_PUBLIC_URL": "https://relay.example", "KOMPAR_API_URL": "https://api.kompar.example", "KOMPAR_API_TOKEN": "api-token"},
			rate: 15000,
			reqs: func(t *testing.T, from, to int, _ time.Time) []hotReq {
				block, err := aes.NewCipher([]byte(hotKomparKey))
				must(t, err)
				out := make([]hotReq, 0, to-from)
				for i := from; i < to; i++ {
					plain := fmt.Appendf(nil, `{"application_id":"K-%04d","name":"Ada Lovelace","ssn":"191212121212",`+
						`"company_id":"556677-8899","company_name":"Analytical Engines AB","company_type":"AB",`+
						`"company_revenue":125000.5,"company_age":4.5,"amount":%d,"duration":36,"purpose":"working capital"}`,
						i%1024, 100000+i)
					iv := fmt.Appendf(nil, "%016d", i)
					n := aes.BlockSize - len(plain)%aes.BlockSize
					padded := slices.Concat(plain, bytes.Repeat([]byte{byte(n)}, n))
					cipher.NewCBCEncrypter(block, iv).CryptBlocks(padded, padded)
					body := fmt.Appendf(nil, `{"data":"%s","iv":"%s"}`,
						base64.StdEncoding.EncodeToString(padded), base64.StdEncoding.EncodeToString(iv))
					h := http.Header{}
					h.Set("Content-Type", "application/json")
					h.Set("Authorization", "token "+hotKomparToken)
					out = append(out, hotReq{path: "/in/kompar/applications", header: h, body: body})
				}
				return out
			},
		},
		"avida": {
			name: "avida",
			env:  map[string]string{"AVIDA_BASIC_PASSWORD": hotAvidaPassword},
			rate: 15000,
			reqs: func(_ *testing.T, from, to int, ts time.Time) []hotReq {
				stamp := ts.UTC().Format(time.RFC3339)
				out := make([]hotReq, 0, to-from)
				for i := from; i < to; i++ {
					body := fmt.Appendf(nil, `{"applicationId":"A-%04d","externalApplicationId":"ext-%010d","agentId":"agent-7",`+
						`"timestamp":"%s","payload":{"product":"consumer-loan","approvedAmount":%d,"duration":60}}`,
						i%1024, i, stamp, 100000+i)
					h := http.Header{}
					h.Set("Content-Type", "application/json")
					h.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("hookrelay:"+hotAvidaPassword)))
					out = append(out, hotReq{path: "/in/avida/approved", header: h, body: body})
				}
				return out
			},
		},
		"resurs": {
			name: "resurs",
			env:  map[string]string{"RESURS_JWKS_APIKEY": benchJWKSAPIKey},
			rate: 3000, // RSA verification; and signing the pool takes a while
			reqs: func(t *testing.T, from, to int, _ time.Time) []hotReq {
				out := make([]hotReq, 0, to-from)
				for _, r := range jwsBodies(t, from, to) {
					h := http.Header{}
					h.Set("Content-Type", "application/json")
					out = append(out, hotReq{path: "/in/resurs", header: h, body: r.Body})
				}
				return out
			},
		},
	}
}

// hotUUID is a UUID-shaped id drawn from i: the same for the same i, in no
// order from one i to the next.
func hotUUID(i int) string {
	h := sha256.Sum256(strconv.AppendInt(nil, int64(i), 10))
	x := hex.EncodeToString(h[:16])
	return x[:8] + "-" + x[8:12] + "-4" + x[13:16] + "-a" + x[17:20] + "-" + x[20:32]
}
