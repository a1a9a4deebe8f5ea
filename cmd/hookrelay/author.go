package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/hookrelay/hookrelay/engine"
	"github.com/hookrelay/hookrelay/engine/ingest"
	"github.com/hookrelay/hookrelay/engine/provider"
)

// try prints what the relay would do with a saved request (SPEC 1).
func try(config string, explicit bool, name, file string, verify bool, stdout, stderr io.Writer) int {
	cfg, ok := load(config, explicit, stderr)
	if !ok {
		return 1
	}
	p := cfg.Provider(name)
	if p == nil {
		fmt.Fprintf(stderr, "hookrelay try: no provider %q\n", name)
		return 1
	}
	data, err := os.ReadFile(file)
	if err != nil {
		fmt.Fprintln(stderr, "hookrelay try:", err)
		return 1
	}
	req, body, err := ingest.ReadRequest(data)
	if err != nil {
		fmt.Fprintln(stderr, "hookrelay try:", err)
		return 1
	}
	t := ingest.Try(context.Background(), p.Provider, req, body, time.Now(), verify)
	t = ingest.MaskTrial(p.Provider, t, body, req.Header) // people read this: sensitive values as *** (SPEC 11)
	out, _ := json.MarshalIndent(t, "", "  ")
	fmt.Fprintln(stdout, string(out))
	if t.Outcome != provider.Accepted {
		return 1
	}
	return 0
}

// test runs recorded provider cases and exits 1 when any fails; --json
// prints the results as JSON, --junit also writes them as JUnit XML.
func test(config string, explicit bool, providers []string, asJSON bool, junit string, stdout, stderr io.Writer) int {
	if !asJSON && junit == "" {
		failed, err := engine.RunCases(config, explicit, providers, stdout)
		if err != nil {
			fmt.Fprintln(stderr, "hookrelay test:", err)
			return 1
		}
		return min(failed, 1)
	}
	results, err := engine.CaseResults(config, explicit, providers)
	if err != nil {
		fmt.Fprintln(stderr, "hookrelay test:", err)
		return 1
	}
	failed := 0
	for _, r := range results {
		if !r.Passed() {
			failed++
		}
	}
	if junit != "" {
		if err := writeJUnit(junit, results); err != nil {
			fmt.Fprintln(stderr, "hookrelay test:", err)
			return 1
		}
	}
	if asJSON {
		printValue(stdout, map[string]any{"cases": results, "passed": len(results) - failed, "failed": failed})
	} else {
		for _, r := range results {
			if r.Passed() {
				fmt.Fprintf(stdout, "ok    %s\n", r.File)
				continue
			}
			fmt.Fprintf(stdout, "FAIL  %s\n", r.File)
			for _, d := range r.Failures {
				fmt.Fprintf(stdout, "      %s\n", d)
			}
		}
		fmt.Fprintf(stdout, "%d passed, %d failed\n", len(results)-failed, failed)
	}
	return min(failed, 1)
}

// JUnit XML as CI servers (Jenkins, GitLab, GitHub actions) read it: one
// suite per provider, one test case per recorded case.
type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name     string      `xml:"name,attr"`
	Tests    int         `xml:"tests,attr"`
	Failures int         `xml:"failures,attr"`
	Time     string      `xml:"time,attr"`
	Cases    []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	ClassName string        `xml:"classname,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitFailure `xml:"failure,omitempty"`
}

type junitFailure struct {
	Message string `xml:"message,attr"`
	Text    string `xml:",chardata"`
}

func writeJUnit(file string, results []engine.CaseResult) error {
	out := junitSuites{}
	var suite *junitSuite
	var total time.Duration
	for _, r := range results {
		if suite == nil || suite.Name != "hookrelay/"+r.Provider {
			if suite != nil {
				suite.Time = seconds(total)
			}
			out.Suites = append(out.Suites, junitSuite{Name: "hookrelay/" + r.Provider})
			suite, total = &out.Suites[len(out.Suites)-1], 0
		}
		c := junitCase{Name: r.File, ClassName: "hookrelay." + r.Provider, Time: seconds(r.Duration)}
		if !r.Passed() {
			c.Failure = &junitFailure{Message: r.Failures[0], Text: strings.Join(r.Failures, "\n")}
			suite.Failures++
			out.Failures++
		}
		suite.Tests++
		out.Tests++
		total += r.Duration
		suite.Cases = append(suite.Cases, c)
	}
	if suite != nil {
		suite.Time = seconds(total)
	}
	b, err := xml.MarshalIndent(out, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(file, append([]byte(xml.Header), append(b, '\n')...), 0o644)
}

func seconds(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', 3, 64) }

// signOptions are sign's and send's flags.
type signOptions struct {
	keyFile, method, path string
	curl                  bool
}

// signFile returns BODY_FILE as a request signed the way the provider
// verifies (encrypted first when encrypt is set and the provider has
// decrypt:), and the configuration it was read with.
func signFile(config string, explicit bool, provider, file string, o signOptions, encrypt bool, stderr io.Writer) (*engine.Config, *http.Request, []byte, bool) {
	cfg, ok := load(config, explicit, stderr)
	if !ok {
		return nil, nil, nil, false
	}
	fail := func(err error) (*engine.Config, *http.Request, []byte, bool) {
		fmt.Fprintln(stderr, "hookrelay:", err)
		return nil, nil, nil, false
	}
	p := cfg.Provider(provider)
	if p == nil {
		return fail(fmt.Errorf("no provider %q", provider))
	}
	body, err := os.ReadFile(file)
	if err != nil {
		return fail(err)
	}
	if encrypt {
		if body, err = p.Encrypt(body); err != nil {
			return fail(err)
		}
	}
	var key []byte
	if o.keyFile != "" {
		if key, err = os.ReadFile(o.keyFile); err != nil {
			return fail(err)
		}
	}
	path := o.path
	if path == "" {
		path = p.Paths[0]
		if strings.Contains(path, "{") {
			return fail(fmt.Errorf("%s has parameters; give the concrete path with --path", path))
		}
	}
	req, err := ingest.NewRequest(o.method, path, nil, body)
	if err == nil {
		req, body, err = ingest.SignRequest(p.Provider, req, body, time.Now(), key)
	}
	if err != nil {
		return fail(err)
	}
	return cfg, req, body, true
}

// sign prints, as raw HTTP/1.1 or a curl command, a request with BODY_FILE
// signed the way the provider verifies; `hookrelay try` reads the former back.
func sign(config string, explicit bool, provider, file string, o signOptions, stdout, stderr io.Writer) int {
	cfg, req, body, ok := signFile(config, explicit, provider, file, o, false, stderr)
	if !ok {
		return 1
	}
	req.Host = cfg.Listen
	if strings.HasPrefix(req.Host, ":") {
		req.Host = "127.0.0.1" + req.Host
	}
	if o.curl {
		fmt.Fprintln(stdout, curlCommand(req, body))
		return 0
	}
	// DumpRequest writes the headers as set: the reader of the dump needs the length.
	req.Header.Set("Content-Length", strconv.Itoa(len(body)))
	dump, err := httputil.DumpRequest(req, true)
	if err != nil {
		fmt.Fprintln(stderr, "hookrelay sign:", err)
		return 1
	}
	if _, err := stdout.Write(dump); err != nil {
		fmt.Fprintln(stderr, "hookrelay sign:", err)
		return 1
	}
	return 0
}

// curlCommand writes req as a curl command line for a POSIX shell.
func curlCommand(req *http.Request, body []byte) string {
	args := []string{"curl", "-sS", "-X", req.Method}
	for _, name := range sortedKeys(req.Header) {
		for _, v := range req.Header[name] {
			args = append(args, "-H", name+": "+v)
		}
	}
	args = append(args, "--data-binary", string(body), "http://"+req.Host+req.URL.RequestURI())
	quoted := make([]string, len(args))
	for i, a := range args {
		// Not shellJoin: the body must reach curl byte for byte, newlines
		// and all, or the signature no longer matches.
		quoted[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		if a != "" && strings.Trim(a, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:=@%+,") == "" {
			quoted[i] = a
		}
	}
	return strings.Join(quoted, " ")
}

// sendCommand is `hookrelay send`: play the lender against a running relay.
func sendCommand(stdout, stderr io.Writer) *cobra.Command {
	c := &cobra.Command{
		Use: "send PROVIDER BODY_FILE", Short: "Sign (and encrypt) BODY_FILE as the lender would and post it to the relay", GroupID: "author",
		Long: "Play the lender: sign BODY_FILE with PROVIDER's configured secrets (for a provider with\n" +
			"decrypt:, first encrypt it with the configured key into the fields the decrypt\n" +
			"expressions read), post it to the running relay's ingest listener and print the\n" +
			"status and the answer. Exit 1 unless the relay answers 2xx.",
		Example: "  hookrelay send example body.json\n" +
			"  hookrelay send kompar application.json --path /in/kompar/applications\n" +
			"  hookrelay send acme body.json --url http://127.0.0.1:8080 --json",
		Args: exactArgs(2, "PROVIDER and BODY_FILE"),
	}
	o := signOptions{method: http.MethodPost}
	c.Flags().StringVar(&o.keyFile, "key", "", "private key file (PEM or JWK) for a jws verifier")
	c.Flags().StringVar(&o.path, "path", "", "request path (default: the provider's first path)")
	target := c.Flags().String("url", "", "the relay's ingest listener (default: listen from the configuration)")
	asJSON := c.Flags().Bool("json", false, "print the status and answer as JSON")
	runWithConfig(c, func(path string, explicit bool, a []string) int {
		return send(path, explicit, a[0], a[1], o, *target, *asJSON, stdout, stderr)
	})
	return c
}

func send(config string, explicit bool, provider, file string, o signOptions, target string, asJSON bool, stdout, stderr io.Writer) int {
	cfg, req, body, ok := signFile(config, explicit, provider, file, o, true, stderr)
	if !ok {
		return 1
	}
	if target == "" {
		target = cfg.Listen
		if strings.HasPrefix(target, ":") {
			target = "127.0.0.1" + target
		}
	}
	if !strings.Contains(target, "://") {
		target = "http://" + target
	}
	out, err := http.NewRequest(req.Method, strings.TrimRight(target, "/")+req.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		fmt.Fprintln(stderr, "hookrelay send:", err)
		return 1
	}
	out.Header = req.Header
	resp, err := (&http.Client{Timeout: adminTimeout}).Do(out)
	if err != nil {
		fmt.Fprintln(stderr, "hookrelay send:", err)
		return 1
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if asJSON {
		printValue(stdout, map[string]any{"status": resp.StatusCode, "answer": string(answer)})
	} else {
		fmt.Fprintf(stdout, "%s %s: %s\n", out.Method, out.URL.Path, resp.Status)
		if len(answer) > 0 {
			fmt.Fprintln(stdout, clean(string(answer)))
		}
	}
	if resp.StatusCode/100 != 2 {
		return 1
	}
	return 0
}
