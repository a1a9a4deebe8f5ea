package outbound

import (
	"net/http"

	"github.com/hookrelay/hookrelay/engine/config"
)

func init() { RegisterAuth("basic", newBasicAuth) }

// basicAuth sends "Authorization: Basic base64(username:password)".
type basicAuth struct{ user, pass string }

func newBasicAuth(c *config.AuthConfig) (Auth, error) {
	if c.Username == "" {
		return nil, config.FieldErr("auth.username", "required for kind basic")
	}
	return &basicAuth{c.Username, c.Password}, nil
}

func (a *basicAuth) Apply(req *http.Request) { req.SetBasicAuth(a.user, a.pass) }

func (a *basicAuth) Secrets() []string {
	if a.pass == "" {
		return nil
	}
	// The pair is what is encoded: its base64 is masked with it.
	return []string{a.pass, a.user + ":" + a.pass}
}
