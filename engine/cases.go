package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/hookrelay/hookrelay/engine/config"
	"github.com/hookrelay/hookrelay/engine/ingest"
)

// Case is one recorded test of a provider, providers.d/NAME.tests/*.yaml: a
// request in, the expected outcome out, in the spirit of promtool test rules.
type Case struct {
	// Description says what the case shows.
	Description string `koanf:"description"`
	// Env sets environment variables (the provider's secrets) for this case;
	// "{{dir}}" in a value is the case file's directory.
	Env map[string]string `koanf:"env"`
	// Now is the time the request is taken to arrive (RFC 3339); empty means
	// the current time. Recorded signatures carry timestamps: set it near them.
	Now     string      `koanf:"now"`
	Request CaseRequest `koanf:"request"`
	Expect  CaseExpect  `koanf:"expect"`
}

// CaseRequest is the request of a case.
type CaseRequest struct {
	Method  string            `koanf:"method"` // default POST
	Path    string            `koanf:"path"`
	Headers map[string]string `koanf:"headers"`
	Body    string            `koanf:"body"`
	// Sign signs the request with the provider's own secrets before it is
	// tried, as `hookrelay sign` does, so that a case need not carry a MAC.
	Sign bool `koanf:"sign"`
	// Key is a private key file (relative to the case) for signing a jws verifier.
	Key string `koanf:"key"`
}

// CaseExpect is the expected outcome; unset fields are not compared.
type CaseExpect struct {
	Status  int    `koanf:"status"`
	Outcome string `koanf:"outcome"` // accepted | rejected | quarantined | error
	// Reason must be contained in the rejection or quarantine reason.
	Reason string `koanf:"reason"`
	// Event lists fields of the canonical event; each must equal the actual
	// one (maps compare the keys listed, recursively).
	Event        map[string]any `koanf:"event"`
	Destinations []string       `koanf:"destinations"`
}

// CaseResult is the result of one recorded case.
type CaseResult struct {
	Provider string        `json:"provider"`
	File     string        `json:"file"` // slash-separated, as given under providers_dir
	Failures []string      `json:"failures"`
	Duration time.Duration `json:"-"`
}

// Passed reports whether the case passed.
func (r CaseResult) Passed() bool { return len(r.Failures) == 0 }

// RunCases runs the recorded cases of the named providers (all when names
// is empty), printing one line per case and a diff for each failure. It
// returns how many cases failed.
func RunCases(configPath string, explicit bool, names []string, out io.Writer) (int, error) {
	results, err := CaseResults(configPath, explicit, names)
	if err != nil {
		return 0, err
	}
	failed := 0
	for _, r := range results {
		if r.Passed() {
			fmt.Fprintf(out, "ok    %s\n", r.File)
			continue
		}
		failed++
		fmt.Fprintf(out, "FAIL  %s\n", r.File)
		for _, d := range r.Failures {
			fmt.Fprintf(out, "      %s\n", d)
		}
	}
	fmt.Fprintf(out, "%d passed, %d failed\n", len(results)-failed, failed)
	return failed, nil
}

// CaseResults runs the recorded cases of the named providers (all when
// names is empty) and returns their results in order.
func CaseResults(configPath string, explicit bool, names []string) ([]CaseResult, error) {
	cfg, err := Load(configPath, explicit)
	if err != nil {
		return nil, err
	}
	if len(names) == 0 {
		for _, p := range cfg.Providers {
			names = append(names, p.Name)
		}
	}
	results := []CaseResult{}
	for _, name := range names {
		p := cfg.Provider(name)
		if p == nil {
			return nil, fmt.Errorf("no provider %q", name)
		}
		files, _ := filepath.Glob(filepath.Join(strings.TrimSuffix(p.File, filepath.Ext(p.File))+".tests", "*.yaml"))
		sort.Strings(files)
		for _, f := range files {
			start := time.Now()
			diffs, err := runCase(configPath, explicit, name, f)
			if err != nil {
				diffs = append(diffs, err.Error())
			}
			results = append(results, CaseResult{Provider: name, File: filepath.ToSlash(f), Failures: append([]string{}, diffs...), Duration: time.Since(start)})
		}
	}
	return results, nil
}

// runCase loads the configuration with the case's environment and tries its request.
func runCase(configPath string, explicit bool, provider, file string) ([]string, error) {
	c, err := loadCase(file)
	if err != nil {
		return nil, err
	}
	dir, _ := filepath.Abs(filepath.Dir(file))
	restore := setEnv(c.Env, dir)
	defer restore()
	cfg, err := Load(configPath, explicit)
	if err != nil {
		return nil, err
	}
	p := cfg.Provider(provider)
	now := time.Now()
	if c.Now != "" {
		if now, err = time.Parse(time.RFC3339, c.Now); err != nil {
			return nil, fmt.Errorf("now: %w", err)
		}
	}
	method := c.Request.Method
	if method == "" {
		method = http.MethodPost
	}
	req, err := ingest.NewRequest(method, c.Request.Path, c.Request.Headers, []byte(c.Request.Body))
	if err != nil {
		return nil, err
	}
	body := []byte(c.Request.Body)
	if c.Request.Sign {
		var key []byte
		if c.Request.Key != "" {
			if key, err = os.ReadFile(filepath.Join(dir, c.Request.Key)); err != nil {
				return nil, err
			}
		}
		if req, body, err = ingest.SignRequest(p.Provider, req, body, now, key); err != nil {
			return nil, err
		}
	}
	t := ingest.Try(context.Background(), p.Provider, req, body, now, true)
	return p.MaskFailures(c.Expect.diff(t), t.Event, body, req.Header), nil
}

func loadCase(file string) (*Case, error) {
	doc, raw, err := config.ReadYAML(file)
	if err != nil {
		return nil, err
	}
	c := &Case{}
	if err := config.DecodeMap(raw, c); err != nil {
		errs := &config.Errors{}
		errs.AddDecode(doc, "", err)
		return nil, errs
	}
	return c, nil
}

// setEnv sets vars and returns a function that restores the environment.
func setEnv(vars map[string]string, dir string) func() {
	old := map[string]*string{}
	for k, v := range vars {
		if prev, ok := os.LookupEnv(k); ok {
			old[k] = &prev
		} else {
			old[k] = nil
		}
		_ = os.Setenv(k, strings.ReplaceAll(v, "{{dir}}", dir))
	}
	return func() {
		for k, v := range old {
			if v == nil {
				_ = os.Unsetenv(k)
			} else {
				_ = os.Setenv(k, *v)
			}
		}
	}
}

// caseOutcomes are the values expect.outcome can take.
var caseOutcomes = []string{"accepted", "rejected", "quarantined", "error"}

// diff lists how t differs from what e expects.
func (e *CaseExpect) diff(t *ingest.Trial) []string {
	var d []string
	if e.Status != 0 && t.Status != e.Status {
		d = append(d, fmt.Sprintf("status: got %d, want %d", t.Status, e.Status))
	}
	if e.Outcome != "" && !slices.Contains(caseOutcomes, e.Outcome) {
		d = append(d, fmt.Sprintf("outcome: got %s, want %s, which is not an outcome: write one of %s",
			t.Outcome, e.Outcome, strings.Join(caseOutcomes, ", ")))
	} else if e.Outcome != "" && t.Outcome.String() != e.Outcome {
		d = append(d, fmt.Sprintf("outcome: got %s (%s), want %s", t.Outcome, t.Reason, e.Outcome))
	}
	if e.Reason != "" && !strings.Contains(t.Reason, e.Reason) {
		d = append(d, fmt.Sprintf("reason: got %q, want it to contain %q", t.Reason, e.Reason))
	}
	if e.Event != nil {
		d = append(d, subsetDiff("event", normalize(e.Event), normalize(t.Event))...)
	}
	if e.Destinations != nil && !reflect.DeepEqual(e.Destinations, t.Destinations) {
		d = append(d, fmt.Sprintf("destinations: got %v, want %v", t.Destinations, e.Destinations))
	}
	return d
}

// normalize round-trips v through JSON so that YAML and JSON values compare.
func normalize(v any) any {
	b, _ := json.Marshal(v)
	var out any
	_ = json.Unmarshal(b, &out)
	return out
}

func subsetDiff(path string, want, got any) []string {
	if wm, ok := want.(map[string]any); ok {
		gm, ok := got.(map[string]any)
		if !ok {
			return []string{fmt.Sprintf("%s: got %s, want an object", path, show(got))}
		}
		keys := make([]string, 0, len(wm))
		for k := range wm {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var d []string
		for _, k := range keys {
			d = append(d, subsetDiff(path+"."+k, wm[k], gm[k])...)
		}
		return d
	}
	if !reflect.DeepEqual(want, got) {
		return []string{fmt.Sprintf("%s: got %s, want %s", path, show(got), show(want))}
	}
	return nil
}

func show(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
