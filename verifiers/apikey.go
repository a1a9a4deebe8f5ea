package verifiers

import "context"

func init() { Register("apikey", Build(NewAPIKey)) }

// APIKeyConfig is the configuration block of the apikey kind.
type APIKeyConfig struct {
	// In is where the key is sent: header or query. Empty means header.
	In string `koanf:"in"`
	// Name is the header (case-insensitive) or query parameter (exact) that
	// holds the key. Empty means API-KEY.
	Name string `koanf:"name"`
	// Key is the accepted key. Set Key or Keys.
	Key string `koanf:"key"`
	// Keys are keys accepted at the same time, for rotation. Sign uses the
	// first one. Set Key or Keys.
	Keys []string `koanf:"keys"`
}

// APIKey checks that a header or query parameter holds one of the keys.
type APIKey struct {
	inQuery bool
	name    string
	keys    tokenSet
	first   string // the key Sign sends
}

var (
	_ Verifier = (*APIKey)(nil)
	_ Signer   = (*APIKey)(nil)
)

// NewAPIKey validates c and returns the verifier. Errors are *ConfigError.
func NewAPIKey(c APIKeyConfig) (*APIKey, error) {
	keys, err := oneOrMany(c.Key, c.Keys, "key", "keys")
	if err != nil {
		return nil, err
	}
	if c.In != "" && c.In != "header" && c.In != "query" {
		return nil, FieldError("in", "unknown place %q: want header or query", c.In)
	}
	if c.Name == "" {
		c.Name = "API-KEY"
	}
	return &APIKey{inQuery: c.In == "query", name: c.Name, keys: newTokenSet(keys), first: keys[0]}, nil
}

// Sign sets the header or query parameter to the first key. For a query key
// it sets req.Query, which the caller turns into the request URL.
func (v *APIKey) Sign(req *Request) error {
	initRequest(req)
	if v.inQuery {
		req.Query.Set(v.name, v.first)
	} else {
		req.Header.Set(v.name, v.first)
	}
	return nil
}

// Verify checks the header or query parameter.
func (v *APIKey) Verify(_ context.Context, req *Request) error {
	where, key := "header", req.Header.Get(v.name)
	if v.inQuery {
		where, key = "query parameter", req.Query.Get(v.name)
	}
	if key == "" {
		return reject(ErrMissing, "no %s %s", v.name, where)
	}
	if !v.keys.match(key) {
		return reject(ErrMismatch, "%s %s does not match", v.name, where)
	}
	return nil
}
