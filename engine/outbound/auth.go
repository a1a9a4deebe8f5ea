package outbound

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"

	"github.com/hookrelay/hookrelay/engine/config"
)

// Auth adds a destination's credential to each request it is sent. Each
// kind lives in its own file and registers itself with RegisterAuth.
type Auth interface {
	// Apply sets the credential on req: a header, or a query parameter.
	Apply(req *http.Request)
	// Secrets are the values Apply sends, and the forms it sends them in
	// (user:password of basic), masked wherever an answer or error is shown.
	Secrets() []string
}

// AuthFactory checks a destination's auth block and builds its Auth. Errors
// name the field (auth.NAME).
type AuthFactory func(c *config.AuthConfig) (Auth, error)

var auths = struct {
	sync.RWMutex
	m map[string]AuthFactory
}{m: map[string]AuthFactory{}}

// RegisterAuth adds an auth kind. It panics on a duplicate kind: that is a
// programming error, found at start-up.
func RegisterAuth(kind string, f AuthFactory) {
	auths.Lock()
	defer auths.Unlock()
	if _, dup := auths.m[kind]; dup {
		panic("outbound: auth kind " + kind + " registered twice")
	}
	auths.m[kind] = f
}

// AuthKinds lists the registered auth kinds, sorted.
func AuthKinds() []string {
	auths.RLock()
	defer auths.RUnlock()
	kinds := make([]string, 0, len(auths.m))
	for k := range auths.m {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	return kinds
}

// NewAuth builds the Auth of c's kind.
func NewAuth(c *config.AuthConfig) (Auth, error) {
	auths.RLock()
	f := auths.m[c.Kind]
	auths.RUnlock()
	if f == nil {
		return nil, config.FieldErr("auth.kind", fmt.Sprintf("%q is not one of %s", c.Kind, strings.Join(AuthKinds(), ", ")))
	}
	return f(c)
}
