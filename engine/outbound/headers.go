package outbound

import (
	"fmt"
	"net/http"

	"golang.org/x/net/http/httpguts"
)

// CheckHeaders refuses a header value holding a control character: net/http
// would refuse it on every attempt, as if the network failed, and a CR or LF
// would start another header. It says which header, once.
func CheckHeaders(h http.Header) error {
	for name, v := range h {
		for _, s := range v {
			if !httpguts.ValidHeaderFieldValue(s) {
				return fmt.Errorf("header %s: the value holds a control character", name)
			}
		}
	}
	return nil
}
