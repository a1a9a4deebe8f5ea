package verifiers

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"strings"
)

func init() { Register("basic", Build(NewBasic)) }

// BasicConfig is the configuration block of the basic kind.
type BasicConfig struct {
	// Users maps each user name to its password. At least one user; names must
	// not contain ':' and passwords must not be empty. Sign uses the first
	// user in sorted name order.
	Users map[string]string `koanf:"users"`
}

// Basic checks "Authorization: Basic base64(user:password)" (RFC 7617).
type Basic struct {
	users map[string][sha256.Size]byte // password digests
	// dummy is compared against for an unknown user, so that an unknown user
	// costs the same work as a wrong password and timing does not reveal
	// which user names exist (caddy's fake-password idea).
	dummy [sha256.Size]byte
	// signUser and signPass are the credentials Sign sends: the first user
	// in sorted name order, so that the choice does not depend on map order.
	signUser, signPass string
}

var (
	_ Verifier = (*Basic)(nil)
	_ Signer   = (*Basic)(nil)
)

// NewBasic validates c and returns the verifier. Errors are *ConfigError.
func NewBasic(c BasicConfig) (*Basic, error) {
	if len(c.Users) == 0 {
		return nil, FieldError("users", "must list at least one user")
	}
	v := &Basic{users: make(map[string][sha256.Size]byte, len(c.Users))}
	for name, pass := range c.Users {
		field := fmt.Sprintf("users.%s", name)
		switch {
		case name == "" || strings.Contains(name, ":"):
			// Reported on users, not users.NAME: that is where a missing
			// password is, and a disabled provider's check passes over
			// errors at a missing secret's place (SPEC 3).
			return nil, FieldError("users", "user name %q must be non-empty and without ':'", name)
		case pass == "":
			return nil, FieldError(field, "password must not be empty")
		}
		v.users[name] = sha256.Sum256([]byte(pass))
		if v.signUser == "" || name < v.signUser {
			v.signUser, v.signPass = name, pass
		}
	}
	rand.Read(v.dummy[:]) // never fails since Go 1.24
	return v, nil
}

// Sign sets "Authorization: Basic" with the first user in sorted name order.
func (v *Basic) Sign(req *Request) error {
	initRequest(req)
	cred := base64.StdEncoding.EncodeToString([]byte(v.signUser + ":" + v.signPass))
	req.Header.Set("Authorization", "Basic "+cred)
	return nil
}

// Verify checks the Authorization header.
func (v *Basic) Verify(_ context.Context, req *Request) error {
	cred, err := credentials(req, "Basic")
	if err != nil {
		return err
	}
	raw, err := base64.StdEncoding.DecodeString(cred)
	if err != nil {
		return reject(ErrMalformed, "Basic credentials are not base64")
	}
	user, pass, ok := strings.Cut(string(raw), ":")
	if !ok {
		return reject(ErrMalformed, "Basic credentials have no ':'")
	}
	want, known := v.users[user]
	if !known {
		want = v.dummy
	}
	got := sha256.Sum256([]byte(pass))
	if subtle.ConstantTimeCompare(got[:], want[:]) != 1 || !known {
		// One message for both cases, so the answer does not reveal user names either.
		return reject(ErrMismatch, "user or password does not match")
	}
	return nil
}
