package verifiers_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/hookrelay/hookrelay/verifiers"
)

func TestDefaultKinds(t *testing.T) {
	for _, kind := range []string{"hmac", "token", "bearer", "basic", "apikey", "ip"} {
		if !slices.Contains(verifiers.Default.Kinds(), kind) {
			t.Errorf("kind %q not registered", kind)
		}
	}
	if _, err := build("nope", nil); !errors.Is(err, verifiers.ErrUnknownKind) {
		t.Errorf("got %v, want ErrUnknownKind", err)
	}
}
