package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runIn runs the command line in dir and returns its exit code and output.
func runIn(t *testing.T, dir string, args ...string) (int, string, string) {
	t.Helper()
	wd, _ := os.Getwd()
	if err := os.Chdir(dir); err != nil {
		t.Fatal(err)
	}
	defer func() { must(t, os.Chdir(wd)) }()
	var out, errOut bytes.Buffer
	code := run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

const authorProvider = `
paths: [/in/acme]
verify:
  - kind: hmac
    secret: env:ACME_SECRET
    signed: "{header.X-Ts}.{body}"
    signature: { header: X-Sig, encoding: hex }
    timestamp: { header: X-Ts, format: unix }
event:
  id: body.id
  key: body.key
  type: body.type
  types: { paid: payment.completed }
routes:
  - to: [broker]
`

func authorDir(t *testing.T) string {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "providers.d", "acme.tests"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "providers.d", "acme.yaml"), []byte(authorProvider), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "body.json"), []byte(`{"id":"e1","key":"k1","type":"paid"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestSignThenTry(t *testing.T) {
	dir := authorDir(t)
	t.Setenv("ACME_SECRET", "s3cret")
	code, signed, errOut := runIn(t, dir, "sign", "acme", "body.json")
	if code != 0 || !strings.HasPrefix(signed, "POST /in/acme HTTP/1.1") || !strings.Contains(signed, "X-Sig: ") {
		t.Fatalf("sign: exit %d\n%s%s", code, signed, errOut)
	}
	if strings.Contains(signed+errOut, "s3cret") {
		t.Error("sign printed the secret")
	}
	must(t, os.WriteFile(filepath.Join(dir, "req.http"), []byte(signed), 0o644))
	code, out, errOut := runIn(t, dir, "try", "acme", "req.http")
	if code != 0 || !strings.Contains(out, `"type": "payment.completed"`) || !strings.Contains(out, `"broker"`) {
		t.Fatalf("try: exit %d\n%s%s", code, out, errOut)
	}
	// The same request against another secret is refused, unless --no-verify.
	t.Setenv("ACME_SECRET", "other")
	if code, out, _ := runIn(t, dir, "try", "acme", "req.http"); code != 1 || !strings.Contains(out, `"status": 401`) {
		t.Errorf("try with the wrong secret: exit %d\n%s", code, out)
	}
	if code, out, _ := runIn(t, dir, "try", "acme", "req.http", "--no-verify"); code != 0 || !strings.Contains(out, `"accepted"`) {
		t.Errorf("try --no-verify: exit %d\n%s", code, out)
	}
	// A JSON request file works as well.
	must(t, os.WriteFile(filepath.Join(dir, "req.json"), []byte(`{"method":"POST","path":"/in/acme","headers":{},"body":{"key":"k2","type":"paid","id":"x"}}`), 0o644))
	if code, out, _ := runIn(t, dir, "try", "--no-verify", "acme", "req.json"); code != 0 || !strings.Contains(out, `"key": "k2"`) {
		t.Errorf("try with a JSON request: exit %d\n%s", code, out)
	}
}

func TestTestCommand(t *testing.T) {
	dir := authorDir(t)
	cases := filepath.Join(dir, "providers.d", "acme.tests")
	must(t, os.WriteFile(filepath.Join(cases, "good.yaml"), []byte(`
env: { ACME_SECRET: case-secret }
request: { path: /in/acme, body: '{"id":"e1","key":"k1","type":"paid"}', sign: true }
expect: { status: 200, outcome: accepted, event: { type: payment.completed, key: k1 }, destinations: [broker] }
`), 0o644))
	must(t, os.WriteFile(filepath.Join(cases, "refused.yaml"), []byte(`
env: { ACME_SECRET: case-secret }
request: { path: /in/acme, headers: { X-Ts: "1", X-Sig: "00" }, body: '{}' }
expect: { status: 401, outcome: rejected }
`), 0o644))
	code, out, errOut := runIn(t, dir, "test")
	if code != 0 || !strings.Contains(out, "2 passed, 0 failed") {
		t.Fatalf("test: exit %d\n%s%s", code, out, errOut)
	}
	if os.Getenv("ACME_SECRET") != "" {
		t.Error("a case's env leaked out of the run")
	}
	must(t, os.WriteFile(filepath.Join(cases, "wrong.yaml"), []byte(`
env: { ACME_SECRET: case-secret }
request: { path: /in/acme, body: '{"id":"e1","key":"k1","type":"paid"}', sign: true }
expect: { event: { type: paid, data: { x: 1 } } }
`), 0o644))
	code, out, _ = runIn(t, dir, "test", "acme")
	for _, want := range []string{"FAIL  providers.d/acme.tests/wrong.yaml", `event.type: got "payment.completed", want "paid"`, "event.data.x: got null, want 1", "2 passed, 1 failed"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if code != 1 {
		t.Errorf("exit %d with a failing case, want 1", code)
	}
	must(t, os.WriteFile(filepath.Join(cases, "typo.yaml"), []byte("expect: { stauts: 200 }\n"), 0o644))
	if _, out, _ := runIn(t, dir, "test", "acme"); !strings.Contains(out, "typo.yaml:1: expect.stauts: unknown field") {
		t.Errorf("a typo in a case is not reported with its line:\n%s", out)
	}
}
