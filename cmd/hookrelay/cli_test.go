package main

import (
	"encoding/json"
	"encoding/xml"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestTestJSONAndJUnit: test --json prints the results, --junit writes
// JUnit XML for CI; an unknown outcome lists the valid ones.
func TestTestJSONAndJUnit(t *testing.T) {
	dir := authorDir(t)
	cases := filepath.Join(dir, "providers.d", "acme.tests")
	must(t, os.WriteFile(filepath.Join(cases, "good.yaml"), []byte(`
env: { ACME_SECRET: case-secret }
request: { path: /in/acme, body: '{"id":"e1","key":"k1","type":"paid"}', sign: true }
expect: { status: 200, outcome: accepted }
`), 0o644))
	must(t, os.WriteFile(filepath.Join(cases, "typo.yaml"), []byte(`
env: { ACME_SECRET: case-secret }
request: { path: /in/acme, body: '{"id":"e1","key":"k1","type":"paid"}', sign: true }
expect: { outcome: accept }
`), 0o644))
	junit := filepath.Join(dir, "report.xml")
	code, out, errOut := runIn(t, dir, "test", "--json", "--junit", junit)
	if code != 1 {
		t.Errorf("exit %d with a failing case, want 1\n%s%s", code, out, errOut)
	}
	var res struct {
		Cases []struct {
			Provider, File string
			Failures       []string
		}
		Passed, Failed int
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("test --json: %v\n%s", err, out)
	}
	if res.Passed != 1 || res.Failed != 1 || len(res.Cases) != 2 || res.Cases[1].File != "providers.d/acme.tests/typo.yaml" {
		t.Errorf("test --json: %+v", res)
	}
	want := "outcome: got accepted, want accept, which is not an outcome: write one of accepted, rejected, quarantined, error"
	if len(res.Cases) == 2 && (len(res.Cases[1].Failures) != 1 || res.Cases[1].Failures[0] != want) {
		t.Errorf("the unknown outcome: %q, want %q", res.Cases[1].Failures, want)
	}
	b, err := os.ReadFile(junit)
	must(t, err)
	var suites struct {
		Tests    int `xml:"tests,attr"`
		Failures int `xml:"failures,attr"`
		Suites   []struct {
			Name  string `xml:"name,attr"`
			Cases []struct {
				Name    string `xml:"name,attr"`
				Failure *struct {
					Message string `xml:"message,attr"`
				} `xml:"failure"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(b, &suites); err != nil {
		t.Fatalf("JUnit XML: %v\n%s", err, b)
	}
	if suites.Tests != 2 || suites.Failures != 1 || len(suites.Suites) != 1 || suites.Suites[0].Name != "hookrelay/acme" ||
		len(suites.Suites[0].Cases) != 2 || suites.Suites[0].Cases[0].Failure != nil ||
		suites.Suites[0].Cases[1].Failure == nil || suites.Suites[0].Cases[1].Failure.Message != want {
		t.Errorf("JUnit XML:\n%s", b)
	}
	// Without --json the text report, and the file all the same.
	must(t, os.Remove(junit))
	if code, out, _ := runIn(t, dir, "test", "acme", "--junit", junit); code != 1 || !strings.Contains(out, "1 passed, 1 failed") || !fileExists(junit) {
		t.Errorf("test --junit: exit %d\n%s", code, out)
	}
}

func TestCheckJSON(t *testing.T) {
	dir := authorDir(t)
	t.Setenv("ACME_SECRET", "s3cret-s3cret-s3cret")
	code, out, errOut := runIn(t, dir, "check", "--json")
	var res checkResult
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil {
		t.Fatalf("check --json: exit %d\n%s%s", code, out, errOut)
	}
	if res.Config != "built-in defaults" || len(res.Providers) != 1 || res.Providers[0].Name != "acme" || res.Providers[0].Disabled != "" ||
		len(res.Destinations) != 1 || res.Destinations[0].Name != "broker" {
		t.Errorf("check --json: %+v", res)
	}
	t.Setenv("ACME_SECRET", "")
	must(t, os.Unsetenv("ACME_SECRET"))
	code, out, _ = runIn(t, dir, "check", "--json")
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil || !strings.Contains(res.Providers[0].Disabled, "ACME_SECRET") {
		t.Errorf("check --json without the secret: exit %d\n%s", code, out)
	}
}

// TestHelpAndCompletion: every command has its own --help with examples
// (sign --help used to print Go's bare flag usage), and cobra's completion.
func TestHelpAndCompletion(t *testing.T) {
	root := newRoot(nil, nil)
	for _, c := range root.Commands() {
		if c.Name() == "help" || c.Name() == "completion" {
			continue
		}
		cmds := append(c.Commands(), c)
		for _, sub := range cmds {
			path := strings.Fields(strings.TrimPrefix(sub.CommandPath(), "hookrelay "))
			code, out, errOut := runIn(t, t.TempDir(), append(path, "--help")...)
			if code != 0 || !strings.Contains(out, "Usage:") || errOut != "" {
				t.Errorf("%v --help: exit %d\n%s%s", path, code, out, errOut)
			}
			if sub.Runnable() && !sub.HasSubCommands() && !strings.Contains(out, "Examples:") && sub.Name() != "version" {
				t.Errorf("%v --help has no examples:\n%s", path, out)
			}
		}
	}
	code, out, _ := runIn(t, t.TempDir(), "sign", "--help")
	for _, want := range []string{"hookrelay sign PROVIDER BODY_FILE [flags]", "--curl", "--key string", "Examples:"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("sign --help lacks %q:\n%s", want, out)
		}
	}
	for _, shell := range []string{"bash", "zsh", "fish"} {
		code, out, errOut := runIn(t, t.TempDir(), "completion", shell)
		if code != 0 || !strings.Contains(out, "hookrelay") || len(out) < 1000 {
			t.Errorf("completion %s: exit %d, %d bytes %s", shell, code, len(out), errOut)
		}
	}
	// Provider names complete from the configuration.
	dir := authorDir(t)
	if code, out, errOut := runIn(t, dir, "__complete", "sign", ""); code != 0 || !strings.HasPrefix(out, "acme\n") {
		t.Errorf("completing sign's provider: exit %d\n%s%s", code, out, errOut)
	}
	// A bare hookrelay is a usage error with the help on stderr; help on stdout.
	if code, out, errOut := runIn(t, t.TempDir()); code != 2 || out != "" || !strings.Contains(errOut, "Operate a running relay") {
		t.Errorf("bare hookrelay: exit %d\n%s%s", code, out, errOut)
	}
	for _, arg := range []string{"help", "--help", "-h"} {
		if code, out, _ := runIn(t, t.TempDir(), arg); code != 0 || !strings.Contains(out, "Operate a running relay") {
			t.Errorf("hookrelay %s: exit %d\n%s", arg, code, out)
		}
	}
	if code, out, _ := runIn(t, t.TempDir(), "version", "--json"); code != 0 || !strings.Contains(out, `"version": `) {
		t.Errorf("version --json: exit %d\n%s", code, out)
	}
	if code, _, errOut := runIn(t, t.TempDir(), "frobnicate"); code != 2 || !strings.Contains(errOut, `unknown command "frobnicate"`) {
		t.Errorf("unknown command: exit %d %s", code, errOut)
	}
}

// TestNewCommandUsageErrors: the new commands' usage errors are exit 2 and
// send nothing.
func TestNewCommandUsageErrors(t *testing.T) {
	srv, hits := fakeAdmin(t, clientToken, nil)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"destinations"}, "destinations: missing subcommand: list, pause or resume"},
		{[]string{"destinations", "pause"}, "destinations pause: want one destination NAME"},
		{[]string{"providers", "poll", "lendo"}, "providers poll: want provider NAME and KEY"},
		{[]string{"quarantine", "list", "--limit", "0"}, "--limit: must be a positive number"},
		{[]string{"quarantine", "reprocess", "--status", "x"}, "flag provided but not defined: --status"},
		{[]string{"rejections"}, "rejections: want the subcommand list"},
		{[]string{"rejections", "list", "--cursor", "x"}, "flag provided but not defined: --cursor"},
		{[]string{"status", "now"}, `status: unexpected argument "now"`},
		{[]string{"status", "--config", "x"}, "status does not take --config"},
		{[]string{"send", "acme"}, "send: want PROVIDER and BODY_FILE"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, out, errOut := runClient(t, srv.URL, tc.args...)
			if code != 2 || out != "" || !strings.Contains(errOut, tc.want) {
				t.Fatalf("exit %d, stdout %q, stderr %q, want %q", code, out, errOut, tc.want)
			}
		})
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("usage errors sent %d requests", n)
	}
}
