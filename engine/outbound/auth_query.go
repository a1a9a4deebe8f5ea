package outbound

import (
	"net/http"
	"net/url"

	"github.com/hookrelay/hookrelay/engine/config"
)

func init() { RegisterAuth("query", newQueryAuth) }

// queryAuth sends an API key as a query parameter, API-KEY unless named,
// beside the URL's own query.
type queryAuth struct{ name, key string }

func newQueryAuth(c *config.AuthConfig) (Auth, error) {
	if err := apiKey(c); err != nil {
		return nil, err
	}
	return &queryAuth{c.Name, c.APIKey}, nil
}

// Apply appends the key to the URL's own query as it is written: a
// destination's query may be signed or order-sensitive, and re-encoding
// it (sorted, escaped afresh) would change it. Only a URL that already
// names the parameter is rewritten, to replace its value.
func (a *queryAuth) Apply(req *http.Request) {
	u := req.URL
	if q := u.Query(); q.Has(a.name) {
		q.Set(a.name, a.key)
		u.RawQuery = q.Encode()
		return
	}
	kv := url.QueryEscape(a.name) + "=" + url.QueryEscape(a.key)
	if u.RawQuery == "" {
		u.RawQuery = kv
	} else {
		u.RawQuery += "&" + kv
	}
}

func (a *queryAuth) Secrets() []string { return []string{a.key} }
