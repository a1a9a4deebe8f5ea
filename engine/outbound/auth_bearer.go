package outbound

import (
	"net/http"

	"github.com/hookrelay/hookrelay/engine/config"
)

func init() { RegisterAuth("bearer", newBearerAuth) }

// bearerAuth sends "Authorization: <scheme> <token>": scheme Bearer unless
// written, the bare token when it is written empty.
type bearerAuth struct{ value, token string }

func newBearerAuth(c *config.AuthConfig) (Auth, error) {
	if c.Token == "" {
		return nil, config.FieldErr("auth.token", "required for kind bearer")
	}
	scheme := "Bearer"
	if c.Scheme != nil {
		scheme = *c.Scheme
	}
	a := &bearerAuth{value: c.Token, token: c.Token}
	if scheme != "" {
		a.value = scheme + " " + c.Token
	}
	return a, nil
}

func (a *bearerAuth) Apply(req *http.Request) { req.Header.Set("Authorization", a.value) }

func (a *bearerAuth) Secrets() []string { return []string{a.token} }
