package admin

import (
	"strings"

	"github.com/hookrelay/hookrelay/engine/internal/headers"
	"github.com/hookrelay/hookrelay/internal/redact"
)

// secretFields are configuration keys whose values are credentials, inside
// the blocks that hold credentials (credentialBlocks): elsewhere `key` is an
// expression.
var secretFields = map[string]bool{
	"secret": true, "secrets": true, "token": true, "tokens": true, "password": true, "key": true, "keys": true,
	"api_key": true, "users": true, "jwks_headers": true, "creds": true,
}

var credentialBlocks = map[string]bool{"verify": true, "decrypt": true, "auth": true, "sign": true, "nats": true}

// redactConfig copies a configuration map, masking credentials written inline:
// secret fields of credential blocks, register and poll `values`, and header
// values whose names say credential; URLs (url, jwks_url, public_url...) as
// redact.URL shows them. env: and file: references are shown, since they
// name, not hold, a secret.
func redactConfig(v any, inCredentials bool) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, val := range x {
			s, isString := val.(string)
			switch {
			case isString && (k == "url" || strings.HasSuffix(k, "_url")):
				out[k] = redact.URL(s)
			case k == "values" || (inCredentials && secretFields[k]):
				out[k] = mask(val)
			case k == "headers":
				out[k] = redactHeaders(val)
			default:
				out[k] = redactConfig(val, inCredentials || credentialBlocks[k])
			}
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, val := range x {
			out[i] = redactConfig(val, inCredentials)
		}
		return out
	}
	return v
}

// redactHeaders masks configured header values whose names say credential.
func redactHeaders(v any) any {
	m, ok := v.(map[string]any)
	if !ok {
		return redactConfig(v, false)
	}
	out := make(map[string]any, len(m))
	for name, val := range m {
		out[name] = val
		if headers.Secret(name) {
			out[name] = mask(val)
		}
	}
	return out
}

func mask(v any) any {
	switch x := v.(type) {
	case string:
		if strings.HasPrefix(x, "env:") || strings.HasPrefix(x, "file:") {
			return x
		}
		return redact.Mask
	case []any:
		out := make([]any, len(x))
		for i, val := range x {
			out[i] = mask(val)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, val := range x {
			out[k] = mask(val)
		}
		return out
	}
	return redact.Mask
}
