package engine

import (
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
)

var avidaEvents = []struct{ event, typ string }{
	{"approved", "application.approved"},
	{"declined", "application.rejected"},
	{"canceled", "application.canceled"},
	{"document-sent", "documents.sent"},
	{"document-signed", "application.signed"},
	{"ready-for-disbursement", "application.ready_for_payout"},
	{"disbursed", "application.paid_out"},
}

var avidaDataNames = []string{"application_id", "external_application_id", "agent_id", "product",
	"approved_amount", "duration", "payload"}

// avidaData is the data the shipped avida.yaml makes of the document's example.
const avidaData = `{"application_id":"string","external_application_id":"string","agent_id":"string",
	"product":"string","approved_amount":0,"duration":0,
	"payload":{"product":"string","approvedAmount":0,"duration":0}}`

func basicAuth(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

func TestSeedAvida(t *testing.T) {
	tr, rec := seedRelay(t, mustAbs(t, "../providers.d"), nil)
	auth := map[string]string{"Authorization": basicAuth("hookrelay", shippedEnv["AVIDA_BASIC_PASSWORD"]),
		"Content-Type": "application/json"}
	example := seedFile(t, "avida/approved.json")

	var want []seedEvent
	// MultiEndpoint: the document's example, as it is, on every event's URL.
	// The body alone is the same for all seven: the type is in the path.
	for _, e := range avidaEvents {
		seedAccept(t, tr, "/in/avida/"+e.event, example, auth)
		want = append(want, seedEvent{typ: e.typ, key: "string", idem: sha256IdemRE("avida"), raw: example,
			occurred: "2024-10-24T17:21:35.531Z", data: seedData(t, avidaDataNames, avidaData)})
	}
	// A resend of one of them is a repeat.
	seedAccept(t, tr, "/in/avida/approved", example, auth)

	// SingleEndpoint: the type in the payload.
	for i, e := range avidaEvents {
		body := fmt.Sprintf(`{"eventType":%q,"applicationId":"APP-%d","externalApplicationId":"EXT-%d","agentId":"agent-7",`+
			`"timestamp":"2024-10-25T08:00:0%dZ","payload":{"product":"privatlan","approvedAmount":150000,"duration":60}}`,
			e.event, i, i, i)
		seedAccept(t, tr, "/in/avida", body, auth)
		want = append(want, seedEvent{typ: e.typ, key: fmt.Sprintf("APP-%d", i), idem: sha256IdemRE("avida"), raw: body,
			occurred: fmt.Sprintf("2024-10-25T08:00:0%dZ", i),
			data: seedData(t, avidaDataNames, fmt.Sprintf(`{"application_id":"APP-%d","external_application_id":"EXT-%d",`+
				`"agent_id":"agent-7","product":"privatlan","approved_amount":150000,"duration":60,`+
				`"payload":{"product":"privatlan","approvedAmount":150000,"duration":60}}`, i, i))})
	}

	// Basic: wrong password, wrong user, none, another scheme.
	ct := map[string]string{"Content-Type": "application/json"}
	for _, h := range []map[string]string{
		{"Authorization": basicAuth("hookrelay", "wrong")},
		{"Authorization": basicAuth("intruder", shippedEnv["AVIDA_BASIC_PASSWORD"])},
		ct,
		{"Authorization": "Bearer " + shippedEnv["AVIDA_BASIC_PASSWORD"]},
	} {
		seedRefuse(t, tr, "avida", "/in/avida/approved", strings.Replace(example, `"string"`, `"refused"`, 1), h)
	}
	seedExpect(t, tr, rec, "avida", want)
}

// TestSeedAvidaAuth runs the other three ways Avida authenticates (four
// variants), each on a copy of avida.yaml whose verify block is replaced as
// its comments show.
func TestSeedAvidaAuth(t *testing.T) {
	const key = "6736bbb4f4b4ebab8c0df4b139395b9" // the document's example key
	yaml := shippedProvider(t, "avida")
	start, end := strings.Index(yaml, "\nverify:\n"), strings.Index(yaml, "\nevent:\n")
	if start < 0 || end < start {
		t.Fatal("avida.yaml: no verify block before event")
	}
	example := seedFile(t, "avida/approved.json")
	for _, c := range []struct {
		name, verify     string
		path             string            // with the credential in the query, for query keys
		right, wrong     map[string]string // headers
		wrongPath, noKey string
	}{
		{name: "token with Bearer scheme",
			verify: `- { kind: token, header: Authorization, prefix: "Bearer ", token: env:AVIDA_API_KEY }`,
			right:  map[string]string{"Authorization": "Bearer " + key},
			wrong:  map[string]string{"Authorization": "Bearer " + key + "x"}},
		{name: "token without scheme",
			verify: `- { kind: token, header: Authorization, prefix: "", token: env:AVIDA_API_KEY }`,
			right:  map[string]string{"Authorization": key},
			wrong:  map[string]string{"Authorization": "Bearer " + key}},
		{name: "header API-KEY",
			verify: `- { kind: apikey, in: header, name: API-KEY, key: env:AVIDA_API_KEY }`,
			right:  map[string]string{"API-KEY": key},
			wrong:  map[string]string{"API-KEY": "0000bbb4f4b4ebab8c0df4b139395b9"}},
		{name: "header with a custom name",
			verify: `- { kind: apikey, in: header, name: X-Avida-Key, key: env:AVIDA_API_KEY }`,
			right:  map[string]string{"X-Avida-Key": key},
			wrong:  map[string]string{"API-KEY": key}}, // the default name is not this provider's
		{name: "query API-KEY",
			verify:    `- { kind: apikey, in: query, name: API-KEY, key: env:AVIDA_API_KEY }`,
			path:      "?API-KEY=" + key,
			wrongPath: "?API-KEY=" + key + "x",
			noKey:     "?api-key=" + key}, // query names are case-sensitive
	} {
		t.Run(c.name, func(t *testing.T) {
			variant := yaml[:start] + "\nverify:\n  " + c.verify + yaml[end:]
			tr, rec := seedRelay(t, seedProviderCopy(t, map[string]string{"avida": variant}),
				map[string]string{"AVIDA_API_KEY": key})
			ct := map[string]string{"Content-Type": "application/json"}
			with := func(h map[string]string) map[string]string {
				out := map[string]string{"Content-Type": "application/json"}
				for k, v := range h {
					out[k] = v
				}
				return out
			}
			seedAccept(t, tr, "/in/avida/approved"+c.path, example, with(c.right))
			refused := strings.Replace(example, `"string"`, `"refused"`, 1)
			if c.wrong != nil {
				seedRefuse(t, tr, "avida", "/in/avida/approved", refused, with(c.wrong))
			}
			if c.wrongPath != "" {
				seedRefuse(t, tr, "avida", "/in/avida/approved"+c.wrongPath, refused, ct)
				seedRefuse(t, tr, "avida", "/in/avida/approved"+c.noKey, refused, ct)
			}
			seedRefuse(t, tr, "avida", "/in/avida/approved", refused, ct) // no credential
			seedExpect(t, tr, rec, "avida", []seedEvent{{typ: "application.approved", key: "string",
				idem: sha256IdemRE("avida"), raw: example, occurred: "2024-10-24T17:21:35.531Z",
				data: seedData(t, avidaDataNames, avidaData)}})
		})
	}
}
