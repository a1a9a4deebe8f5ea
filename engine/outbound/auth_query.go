package outbound

import (
	"net/http"

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

func (a *queryAuth) Apply(req *http.Request) {
	q := req.URL.Query() // keeps the URL's own query string
	q.Set(a.name, a.key)
	req.URL.RawQuery = q.Encode()
}

func (a *queryAuth) Secrets() []string { return []string{a.key} }
