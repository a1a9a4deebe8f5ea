package provider

import (
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/hookrelay/hookrelay/verifiers"
)

// TestRefused: a refusal for keys that cannot be had is 503 "error"
// (wrapped too, as a jws verifier wraps it); any other is 401 "rejected".
func TestRefused(t *testing.T) {
	for _, c := range []struct {
		err     error
		status  int
		outcome Outcome
	}{
		{verifiers.ErrUnavailable, http.StatusServiceUnavailable, Unavailable},
		{fmt.Errorf("verify[0]: %w", verifiers.ErrUnavailable), http.StatusServiceUnavailable, Unavailable},
		{errors.New("signature mismatch"), http.StatusUnauthorized, Rejected},
		{&RequirementError{N: 1}, http.StatusUnauthorized, Rejected},
	} {
		r := Refused(c.err)
		if r.Status != c.status || r.Outcome != c.outcome || r.Reason() != c.err.Error() {
			t.Errorf("%v: %d %s %q", c.err, r.Status, r.Outcome, r.Reason())
		}
	}
	if Unavailable.String() != "error" || Failed.String() != "error" || Quarantined.String() != "quarantined" {
		t.Error("labels changed")
	}
}
