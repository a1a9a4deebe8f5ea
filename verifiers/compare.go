package verifiers

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
)

// reject wraps a sentinel with a detail for the sender. Callers pass only
// header names, formats and other public facts, never secret material.
func reject(sentinel error, format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{sentinel}, args...)...)
}

// oneOrMany merges a single-value field and its list form ("token" and
// "tokens"). Exactly one of them must be set and no value may be empty, since an
// empty secret would accept an empty credential.
func oneOrMany(single string, many []string, singleField, manyField string) ([]string, error) {
	switch {
	case single != "" && len(many) > 0:
		return nil, FieldError(singleField, "set only one of %s or %s", singleField, manyField)
	case single != "":
		return []string{single}, nil
	case len(many) == 0:
		return nil, FieldError(singleField, "one of %s or %s must be set", singleField, manyField)
	}
	for i, s := range many {
		if s == "" {
			return nil, FieldError(fmt.Sprintf("%s[%d]", manyField, i), "must not be empty")
		}
	}
	return many, nil
}

// tokenSet holds the SHA-256 digests of accepted tokens. Comparing digests
// keeps both sides the same length, so neither a token's length nor the length
// of its common prefix with the candidate shows in the timing.
type tokenSet [][sha256.Size]byte

func newTokenSet(tokens []string) tokenSet {
	set := make(tokenSet, len(tokens))
	for i, t := range tokens {
		set[i] = sha256.Sum256([]byte(t))
	}
	return set
}

// match reports whether candidate is one of the tokens. It compares against
// every token, without stopping at the first hit, so the time taken does not
// reveal which token matched.
func (s tokenSet) match(candidate string) bool {
	got := sha256.Sum256([]byte(candidate))
	ok := 0
	for i := range s {
		ok |= subtle.ConstantTimeCompare(got[:], s[i][:])
	}
	return ok == 1
}
