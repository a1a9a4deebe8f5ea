package verifiers_test

import (
	"crypto/hmac"
	"encoding/hex"
	"errors"
	"hash"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/go-viper/mapstructure/v2"

	"github.com/hookrelay/hookrelay/verifiers"
)

// now is the fixed time every test request is received at.
var now = time.Date(2024, 1, 15, 10, 35, 0, 0, time.UTC)

// decoder decodes cfg the way the engine does: koanf tags, unknown keys are
// errors, weak typing, and durations from strings.
func decoder(cfg map[string]any) verifiers.Decoder {
	return func(out any) error {
		d, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{
			TagName:          "koanf",
			ErrorUnused:      true,
			WeaklyTypedInput: true,
			DecodeHook:       mapstructure.StringToTimeDurationHookFunc(),
			Result:           out,
		})
		if err != nil {
			return err
		}
		return d.Decode(cfg)
	}
}

// build makes a verifier of kind from cfg through the default registry.
func build(kind string, cfg map[string]any) (verifiers.Verifier, error) {
	return verifiers.Default.New(kind, decoder(cfg))
}

// mustBuild is build that fails the test on a config error.
func mustBuild(t testing.TB, kind string, cfg map[string]any) verifiers.Verifier {
	t.Helper()
	v, err := build(kind, cfg)
	if err != nil {
		t.Fatalf("build %s: %v", kind, err)
	}
	return v
}

// req returns a request received at now with body and header name/value pairs.
func req(body string, headers ...string) *verifiers.Request {
	h := http.Header{}
	for i := 0; i+1 < len(headers); i += 2 {
		h.Add(headers[i], headers[i+1])
	}
	return &verifiers.Request{
		Method: http.MethodPost, Path: "/in/test", Header: h, Query: url.Values{},
		Params: map[string]string{}, Body: []byte(body), RemoteAddr: "192.0.2.1:54321", Received: now,
	}
}

// mac is the hex MAC of msg under key, computed independently of the package.
func mac(h func() hash.Hash, key, msg string) string {
	m := hmac.New(h, []byte(key))
	m.Write([]byte(msg))
	return hex.EncodeToString(m.Sum(nil))
}

// sentinels are the rejection reasons a verifier may wrap.
var sentinels = []error{
	verifiers.ErrMissing, verifiers.ErrMalformed, verifiers.ErrMismatch,
	verifiers.ErrStale, verifiers.ErrForbidden,
}

// checkErr fails unless err wraps want; a nil want means accepted.
func checkErr(t *testing.T, err, want error) {
	t.Helper()
	if want == nil {
		if err != nil {
			t.Fatalf("rejected: %v", err)
		}
		return
	}
	if !errors.Is(err, want) {
		t.Fatalf("got %v, want %v", err, want)
	}
}

// wantFieldError fails unless err is a *ConfigError for field.
func wantFieldError(t *testing.T, err error, field string) {
	t.Helper()
	var ce *verifiers.ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("got %v (%T), want *ConfigError for %q", err, err, field)
	}
	if ce.Field != field {
		t.Fatalf("got field %q (%v), want %q", ce.Field, err, field)
	}
}
