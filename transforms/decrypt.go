package transforms

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// DecryptSpec is a provider's `decrypt:` block: the body carries an
// encrypted document whose plaintext (JSON) replaces the body.
type DecryptSpec struct {
	// Kind is aes-cbc (PKCS#7 padding) or aes-gcm.
	Kind string `koanf:"kind"`
	// Key is 16, 24 or 32 bytes once decoded.
	Key string `koanf:"key"`
	// KeyEncoding is base64 (default, standard alphabet), hex or raw.
	KeyEncoding string `koanf:"key_encoding"`
	// Data is an expression giving the base64 ciphertext; for gcm, with the
	// 16-byte tag appended as Go's Seal makes it, unless Tag is set.
	Data string `koanf:"data"`
	// IV is an expression giving the base64 iv (the nonce for gcm).
	IV string `koanf:"iv"`
	// Tag is an expression giving a separate base64 gcm tag; empty means
	// the tag ends Data.
	Tag string `koanf:"tag"`
}

// Decrypter is a compiled DecryptSpec.
type Decrypter struct {
	block         cipher.Block
	gcm           bool
	data, iv, tag *Program
}

// CompileDecrypt checks the key and compiles the expressions. With
// keyMissing (a provider loaded disabled) the key is not checked.
func CompileDecrypt(s DecryptSpec, keyMissing bool) (*Decrypter, error) {
	d := &Decrypter{}
	switch s.Kind {
	case "aes-cbc":
	case "aes-gcm":
		d.gcm = true
	default:
		return nil, &FieldError{"kind", fmt.Errorf("%q is not one of aes-cbc, aes-gcm", s.Kind)}
	}
	if s.Tag != "" && !d.gcm {
		return nil, &FieldError{"tag", errors.New("only aes-gcm has a tag")}
	}
	for _, f := range []struct {
		name, src string
		dst       **Program
		required  bool
	}{{"data", s.Data, &d.data, true}, {"iv", s.IV, &d.iv, true}, {"tag", s.Tag, &d.tag, false}} {
		if f.src == "" {
			if f.required {
				return nil, &FieldError{f.name, errors.New("required")}
			}
			continue
		}
		p, err := Compile(f.src)
		if err != nil {
			return nil, &FieldError{f.name, err}
		}
		*f.dst = p
	}
	// Checked before a missing key returns: a disabled provider is
	// validated in full but for the secret's value (SPEC 3).
	switch s.KeyEncoding {
	case "", "base64", "hex", "raw":
	default:
		return nil, &FieldError{"key_encoding", fmt.Errorf("%q is not one of base64, hex, raw", s.KeyEncoding)}
	}
	if keyMissing {
		return d, nil
	}
	var key []byte
	var err error
	switch s.KeyEncoding {
	case "", "base64":
		key, err = base64.StdEncoding.DecodeString(s.Key)
	case "hex":
		key, err = hex.DecodeString(s.Key)
	case "raw":
		key = []byte(s.Key)
	}
	if err != nil {
		// The error text could echo key material: say only what is wrong.
		return nil, &FieldError{"key", errors.New("not valid " + s.KeyEncoding)}
	}
	if d.block, err = aes.NewCipher(key); err != nil {
		return nil, &FieldError{"key", fmt.Errorf("%d bytes once decoded; AES needs 16, 24 or 32", len(key))}
	}
	return d, nil
}

// Decrypt returns the plaintext of the request in env. Errors name what is
// wrong (bad base64, wrong key or padding) and never carry key material.
func (d *Decrypter) Decrypt(env *Env) ([]byte, error) {
	ct, err := d.field(env, "data", d.data)
	if err != nil {
		return nil, err
	}
	iv, err := d.field(env, "iv", d.iv)
	if err != nil {
		return nil, err
	}
	if d.gcm {
		if d.tag != nil {
			tag, err := d.field(env, "tag", d.tag)
			if err != nil {
				return nil, err
			}
			ct = append(ct, tag...)
		}
		if len(iv) == 0 {
			return nil, errors.New("decrypt: empty iv")
		}
		aead, err := cipher.NewGCMWithNonceSize(d.block, len(iv))
		if err != nil {
			return nil, fmt.Errorf("decrypt: %w", err)
		}
		pt, err := aead.Open(nil, iv, ct, nil)
		if err != nil {
			return nil, errors.New("decrypt: authentication failed (wrong key, iv or tag, or tampered data)")
		}
		return pt, nil
	}
	if len(iv) != aes.BlockSize {
		return nil, fmt.Errorf("decrypt: iv is %d bytes, aes-cbc needs %d", len(iv), aes.BlockSize)
	}
	if len(ct) == 0 || len(ct)%aes.BlockSize != 0 {
		return nil, fmt.Errorf("decrypt: ciphertext of %d bytes is not a whole number of blocks", len(ct))
	}
	pt := make([]byte, len(ct))
	cipher.NewCBCDecrypter(d.block, iv).CryptBlocks(pt, ct)
	n := int(pt[len(pt)-1])
	if n == 0 || n > aes.BlockSize || !bytes.Equal(pt[len(pt)-n:], bytes.Repeat([]byte{byte(n)}, n)) {
		return nil, errors.New("decrypt: bad padding (wrong key or iv)")
	}
	return pt[:len(pt)-n], nil
}

func (d *Decrypter) field(env *Env, name string, p *Program) ([]byte, error) {
	v, err := p.Run(env)
	if err != nil {
		return nil, fmt.Errorf("decrypt.%s: %w", name, err)
	}
	s, ok := v.(string)
	if !ok || s == "" {
		return nil, fmt.Errorf("decrypt.%s: %s gave no base64 string", name, p)
	}
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil {
		if b, err = base64.RawStdEncoding.DecodeString(strings.TrimRight(s, "=")); err != nil {
			return nil, fmt.Errorf("decrypt.%s: not valid base64", name)
		}
	}
	return b, nil
}

// bodyField matches the decrypt expressions Encrypt can write: body.FIELD.
var bodyField = regexp.MustCompile(`^\s*body\.([A-Za-z_][A-Za-z0-9_]*)\s*$`)

// Encrypt is the lender's side of Decrypt, for `hookrelay send`: it encrypts
// plaintext under a fresh random iv and returns the JSON body with the base64
// ciphertext, iv (and tag) in the fields the data, iv (and tag) expressions
// read. Only body.FIELD expressions say where to write; others are an error.
func (d *Decrypter) Encrypt(plaintext []byte) ([]byte, error) {
	if d.block == nil {
		return nil, errors.New("decrypt: no key (the provider is disabled)")
	}
	fields := map[string]string{}
	name := func(what string, p *Program) (string, error) {
		m := bodyField.FindStringSubmatch(p.String())
		if m == nil {
			return "", fmt.Errorf("decrypt.%s: %q is not a body.FIELD path, so the lender's body cannot be built from it", what, p.String())
		}
		return m[1], nil
	}
	dataField, err := name("data", d.data)
	if err != nil {
		return nil, err
	}
	ivField, err := name("iv", d.iv)
	if err != nil {
		return nil, err
	}
	var ct, iv []byte
	if d.gcm {
		iv = make([]byte, 12)
		if _, err := rand.Read(iv); err != nil {
			return nil, err
		}
		aead, err := cipher.NewGCM(d.block)
		if err != nil {
			return nil, err
		}
		ct = aead.Seal(nil, iv, plaintext, nil)
		if d.tag != nil {
			tagField, err := name("tag", d.tag)
			if err != nil {
				return nil, err
			}
			n := len(ct) - aead.Overhead()
			fields[tagField] = base64.StdEncoding.EncodeToString(ct[n:])
			ct = ct[:n]
		}
	} else {
		iv = make([]byte, aes.BlockSize)
		if _, err := rand.Read(iv); err != nil {
			return nil, err
		}
		n := aes.BlockSize - len(plaintext)%aes.BlockSize
		padded := append(append([]byte{}, plaintext...), bytes.Repeat([]byte{byte(n)}, n)...)
		ct = make([]byte, len(padded))
		cipher.NewCBCEncrypter(d.block, iv).CryptBlocks(ct, padded)
	}
	fields[dataField] = base64.StdEncoding.EncodeToString(ct)
	fields[ivField] = base64.StdEncoding.EncodeToString(iv)
	if len(fields) < 2 || (d.tag != nil && len(fields) < 3) {
		return nil, errors.New("decrypt: data, iv and tag must read different body fields")
	}
	return json.Marshal(fields)
}
