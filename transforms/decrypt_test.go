package transforms

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

func encryptCBC(t *testing.T, key, iv, pt []byte) []byte {
	b, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	n := aes.BlockSize - len(pt)%aes.BlockSize
	pt = append(append([]byte(nil), pt...), bytes.Repeat([]byte{byte(n)}, n)...)
	ct := make([]byte, len(pt))
	cipher.NewCBCEncrypter(b, iv).CryptBlocks(ct, pt)
	return ct
}

func encryptGCM(t *testing.T, key, nonce, pt []byte) []byte {
	b, _ := aes.NewCipher(key)
	aead, err := cipher.NewGCMWithNonceSize(b, len(nonce))
	if err != nil {
		t.Fatal(err)
	}
	return aead.Seal(nil, nonce, pt, nil)
}

func random(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

const application = `{"application_id":"A-1","name":"Ada","amount":250000,"duration":24,"guarantors":[{"ssn":"19800101-1234"}]}`

func TestDecrypt(t *testing.T) {
	b64 := base64.StdEncoding.EncodeToString
	for _, size := range []int{16, 24, 32} {
		key := random(size)
		for _, enc := range []struct {
			name string
			key  string
		}{{"base64", b64(key)}, {"hex", hex.EncodeToString(key)}} {
			iv := random(16)
			d, err := CompileDecrypt(DecryptSpec{Kind: "aes-cbc", Key: enc.key, KeyEncoding: enc.name, Data: "body.data", IV: "body.iv"}, false)
			if err != nil {
				t.Fatal(err)
			}
			body := `{"data":"` + b64(encryptCBC(t, key, iv, []byte(application))) + `","iv":"` + b64(iv) + `"}`
			pt, err := d.Decrypt(env(body))
			if err != nil || string(pt) != application {
				t.Errorf("cbc %d %s: %q %v", size*8, enc.name, pt, err)
			}
		}
		nonce := random(12)
		ct := encryptGCM(t, key, nonce, []byte(application))
		d, err := CompileDecrypt(DecryptSpec{Kind: "aes-gcm", Key: b64(key), Data: "body.data", IV: "body.iv"}, false)
		if err != nil {
			t.Fatal(err)
		}
		if pt, err := d.Decrypt(env(`{"data":"` + b64(ct) + `","iv":"` + b64(nonce) + `"}`)); err != nil || string(pt) != application {
			t.Errorf("gcm %d: %q %v", size*8, pt, err)
		}
		sep, _ := CompileDecrypt(DecryptSpec{Kind: "aes-gcm", Key: b64(key), Data: "body.data", IV: "body.iv", Tag: "body.tag"}, false)
		body := `{"data":"` + b64(ct[:len(ct)-16]) + `","iv":"` + b64(nonce) + `","tag":"` + b64(ct[len(ct)-16:]) + `"}`
		if pt, err := sep.Decrypt(env(body)); err != nil || string(pt) != application {
			t.Errorf("gcm separate tag %d: %q %v", size*8, pt, err)
		}
	}
}

func TestDecryptFailures(t *testing.T) {
	b64 := base64.StdEncoding.EncodeToString
	key, other, iv := random(32), random(32), random(16)
	ct := encryptCBC(t, key, iv, []byte(application))
	d, _ := CompileDecrypt(DecryptSpec{Kind: "aes-cbc", Key: b64(key), Data: "body.data", IV: "body.iv"}, false)
	wrong, _ := CompileDecrypt(DecryptSpec{Kind: "aes-cbc", Key: b64(other), Data: "body.data", IV: "body.iv"}, false)
	gcm, _ := CompileDecrypt(DecryptSpec{Kind: "aes-gcm", Key: b64(key), Data: "body.data", IV: "body.iv"}, false)
	good := `{"data":"` + b64(ct) + `","iv":"` + b64(iv) + `"}`
	for _, c := range []struct {
		name string
		d    *Decrypter
		body string
		want string
	}{
		{"wrong key", wrong, good, "padding"},
		{"bad base64", d, `{"data":"%%%","iv":"` + b64(iv) + `"}`, "decrypt.data: not valid base64"},
		{"missing iv", d, `{"data":"` + b64(ct) + `"}`, "decrypt.iv"},
		{"short iv", d, `{"data":"` + b64(ct) + `","iv":"AAAA"}`, "iv is 3 bytes"},
		{"partial block", d, `{"data":"` + b64(ct[:20]) + `","iv":"` + b64(iv) + `"}`, "whole number of blocks"},
		{"gcm tampered", gcm, `{"data":"` + b64(encryptGCM(t, other, iv[:12], []byte("{}"))) + `","iv":"` + b64(iv[:12]) + `"}`, "authentication failed"},
	} {
		_, err := c.d.Decrypt(env(c.body))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", c.name, err, c.want)
		}
		if err != nil && (strings.Contains(err.Error(), b64(key)) || strings.Contains(err.Error(), hex.EncodeToString(key))) {
			t.Errorf("%s: error carries the key", c.name)
		}
	}
	for _, c := range []struct {
		spec  DecryptSpec
		field string
	}{
		{DecryptSpec{Kind: "rot13", Data: "body.d", IV: "body.iv"}, "kind"},
		{DecryptSpec{Kind: "aes-cbc", Key: b64(random(20)), Data: "body.d", IV: "body.iv"}, "key"},
		{DecryptSpec{Kind: "aes-cbc", Key: "!!", Data: "body.d", IV: "body.iv"}, "key"},
		{DecryptSpec{Kind: "aes-cbc", Key: b64(key), IV: "body.iv"}, "data"},
		{DecryptSpec{Kind: "aes-cbc", Key: b64(key), Data: "body.d", IV: "body.iv", Tag: "body.t"}, "tag"},
	} {
		_, err := CompileDecrypt(c.spec, false)
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != c.field {
			t.Errorf("%+v: %v, want a FieldError on %s", c.spec, err, c.field)
		}
	}
}

func FuzzDecrypt(f *testing.F) {
	key := bytes.Repeat([]byte{7}, 32)
	d, _ := CompileDecrypt(DecryptSpec{Kind: "aes-cbc", Key: base64.StdEncoding.EncodeToString(key), Data: "body.data", IV: "body.iv"}, false)
	g, _ := CompileDecrypt(DecryptSpec{Kind: "aes-gcm", Key: base64.StdEncoding.EncodeToString(key), Data: "body.data", IV: "body.iv"}, false)
	f.Add(`{"data":"AAAAAAAAAAAAAAAAAAAAAA==","iv":"AAAAAAAAAAAAAAAAAAAAAA=="}`)
	f.Add(`{"data":"","iv":""}`)
	f.Fuzz(func(t *testing.T, body string) {
		_, _ = d.Decrypt(env(body))
		_, _ = g.Decrypt(env(body))
	})
}

// TestEncryptRoundTrip: Encrypt writes the lender's body that Decrypt reads
// back, for each kind; an expression other than body.FIELD is an error.
func TestEncryptRoundTrip(t *testing.T) {
	key := base64.StdEncoding.EncodeToString(random(32))
	for _, spec := range []DecryptSpec{
		{Kind: "aes-cbc", Key: key, Data: "body.data", IV: "body.iv"},
		{Kind: "aes-gcm", Key: key, Data: "body.payload", IV: " body.nonce "},
		{Kind: "aes-gcm", Key: key, Data: "body.ct", IV: "body.iv", Tag: "body.tag"},
	} {
		d, err := CompileDecrypt(spec, false)
		if err != nil {
			t.Fatal(err)
		}
		body, err := d.Encrypt([]byte(application))
		if err != nil {
			t.Fatalf("%+v: %v", spec, err)
		}
		if strings.Contains(string(body), "Ada") {
			t.Errorf("%s: the plaintext shows in %s", spec.Kind, body)
		}
		pt, err := d.Decrypt(env(string(body)))
		if err != nil || string(pt) != application {
			t.Errorf("%+v: round trip %q %v (body %s)", spec, pt, err, body)
		}
	}
	d, err := CompileDecrypt(DecryptSpec{Kind: "aes-cbc", Key: key, Data: "body.doc.data", IV: "body.iv"}, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Encrypt([]byte(application)); err == nil || !strings.Contains(err.Error(), `decrypt.data: "body.doc.data" is not a body.FIELD path`) {
		t.Errorf("nested data path: %v", err)
	}
}
