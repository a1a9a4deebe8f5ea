package outbound

import (
	"fmt"
	"net/http"

	"golang.org/x/net/http/httpguts"
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
