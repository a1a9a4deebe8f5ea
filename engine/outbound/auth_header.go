package outbound

import (
	"net/http"

	"github.com/hookrelay/hookrelay/engine/config"
)

func init() { RegisterAuth("header", newHeaderAuth) }

// headerAuth sends an API key in a header, API-KEY unless named.
type headerAuth struct{ name, key string }

func newHeaderAuth(c *config.AuthConfig) (Auth, error) {
	if err := apiKey(c); err != nil {
		return nil, err
	}
	return &headerAuth{c.Name, c.APIKey}, nil
}

// apiKey checks the api_key of the header and query kinds, and names the
// header or parameter API-KEY when the block does not: the admin API shows
// the name the relay sends.
func apiKey(c *config.AuthConfig) error {
	if c.APIKey == "" {
		return config.FieldErr("auth.api_key", "required for kind "+c.Kind)
	}
	if c.Name == "" {
		c.Name = "API-KEY"
	}
	return nil
}

func (a *headerAuth) Apply(req *http.Request) { req.Header.Set(a.name, a.key) }

func (a *headerAuth) Secrets() []string { return []string{a.key} }
