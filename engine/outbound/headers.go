package outbound

import (
	"fmt"
	"net/http"

	"golang.org/x/net/http/httpguts"

	"github.com/hookrelay/hookrelay/transforms"
)

// CheckHeaders refuses a request whose header value holds a control
// character (CheckHeaderValue), naming the header.
func CheckHeaders(h http.Header) error {
	for name, v := range h {
		for _, s := range v {
			if err := CheckHeaderValue(s); err != nil {
				return fmt.Errorf("header %s: %w", name, err)
			}
		}
	}
	return nil
}

func validHeaderValue(v string) bool { return httpguts.ValidHeaderFieldValue(v) }

// Header is a request header whose value is a template.
type Header struct {
	Name  string
	Value *transforms.Template
}

// Render renders the value for env, refusing one that holds a control
// character (CheckHeaderValue). Callers prefix the header's name and place.
func (h Header) Render(env *transforms.Env) (string, error) {
	v, err := h.Value.Execute(env)
	if err != nil {
		return "", err
	}
	if err := CheckHeaderValue(v); err != nil {
		return "", err
	}
	return v, nil
}
