package provider

import (
	"fmt"

	"github.com/hookrelay/hookrelay/verifiers"
)

// Sign adds to req what p's verifiers check (SPEC 1, `hookrelay sign`), in
// their order. A jws verifier signs only with jwsKey, a private key (PEM or
// JWK); ip checks cannot be signed and are skipped.
func (p *Provider) Sign(req *verifiers.Request, jwsKey []byte) error {
	if p.Disabled != "" {
		return fmt.Errorf("provider %s is disabled: %s", p.Name, p.Disabled)
	}
	for i, v := range p.Verifiers {
		switch s := v.(type) {
		case interface {
			SignWithKey(*verifiers.Request, []byte, string) error
		}:
			if jwsKey == nil {
				return fmt.Errorf("verify[%d]: a jws verifier signs only with a private key (--key)", i)
			}
			if err := s.SignWithKey(req, jwsKey, ""); err != nil {
				return fmt.Errorf("verify[%d]: %w", i, err)
			}
		case verifiers.Signer:
			if err := s.Sign(req); err != nil {
				return fmt.Errorf("verify[%d]: %w", i, err)
			}
		}
	}
	return nil
}

// Encrypt encrypts a plaintext body as the lender would for a provider with
// `decrypt:` (`hookrelay send`); without one the body is returned as is.
func (p *Provider) Encrypt(plaintext []byte) ([]byte, error) {
	if p.Decrypt == nil {
		return plaintext, nil
	}
	if p.Disabled != "" {
		return nil, fmt.Errorf("provider %s is disabled: %s", p.Name, p.Disabled)
	}
	return p.Decrypt.Encrypt(plaintext)
}
