package engine

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	yamlv3 "go.yaml.in/yaml/v3"

	"github.com/hookrelay/hookrelay/engine/config"
	"github.com/hookrelay/hookrelay/verifiers"
)

// The references in docs/ are the users' contract (the README points to
// them), so they are kept true by these tests: every key the decoder knows is
// in docs/configuration.md, every key listed there is known, and every route
// the admin listener serves is in docs/admin-api.md.

// documentedAhead are keys the reference may describe before the decoder
// knows them (a change merged separately); empty once they are in.
var documentedAhead = map[string]bool{}

// koanfPaths adds to out the path of every koanf key of t under prefix: a
// struct's fields by their tags (squashed ones inline), NAME for the keys of
// a map of structs, [] for the items of a list of structs. Blocks are keys
// too ("retry", "destinations.NAME").
func koanfPaths(t reflect.Type, prefix string, out map[string]bool) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return
	}
	join := func(name string) string {
		if prefix == "" {
			return name
		}
		return prefix + "." + name
	}
	for i := range t.NumField() {
		f := t.Field(i)
		tag, ok := f.Tag.Lookup("koanf")
		if !ok || tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if opts == "squash" {
			koanfPaths(f.Type, prefix, out)
			continue
		}
		path := join(name)
		out[path] = true
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		switch ft.Kind() {
		case reflect.Struct:
			koanfPaths(ft, path, out)
		case reflect.Map:
			if hasKoanfTags(ft.Elem()) {
				out[path+".NAME"] = true
				koanfPaths(ft.Elem(), path+".NAME", out)
			}
		case reflect.Slice:
			if hasKoanfTags(ft.Elem()) {
				koanfPaths(ft.Elem(), path+"[]", out)
			}
		}
	}
}

func hasKoanfTags(t reflect.Type) bool {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return false
	}
	for i := range t.NumField() {
		if _, ok := t.Field(i).Tag.Lookup("koanf"); ok {
			return true
		}
	}
	return false
}

func paths(v any) map[string]bool {
	out := map[string]bool{}
	koanfPaths(reflect.TypeOf(v), "", out)
	return out
}

// verifierConfigs returns each registered verifier kind's configuration
// struct: the type its factory asks the decoder to fill.
func verifierConfigs(t *testing.T) map[string]reflect.Type {
	stop := errors.New("stop")
	out := map[string]reflect.Type{}
	for _, kind := range verifiers.Default.Kinds() {
		var typ reflect.Type
		_, err := verifiers.Default.New(kind, func(cfg any) error {
			typ = reflect.TypeOf(cfg)
			return stop
		})
		if !errors.Is(err, stop) || typ == nil {
			t.Fatalf("verifier kind %s: its factory did not decode a configuration (%v)", kind, err)
		}
		out[kind] = typ
	}
	return out
}

func readDoc(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "docs", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// section returns the text under the heading line `heading` up to the next
// heading of the same or a higher level (fewer #), and until `stop` when it
// is a heading inside it.
func section(t *testing.T, doc, heading, stop string) string {
	t.Helper()
	level := len(heading) - len(strings.TrimLeft(heading, "#"))
	var out []string
	in := false
	for _, line := range strings.Split(doc, "\n") {
		if strings.HasPrefix(line, "#") {
			l := len(line) - len(strings.TrimLeft(line, "#"))
			switch {
			case line == heading:
				in = true
				continue
			case in && (l <= level || line == stop):
				return strings.Join(out, "\n")
			}
		}
		if in {
			out = append(out, line)
		}
	}
	if !in {
		t.Fatalf("no heading %q", heading)
	}
	return strings.Join(out, "\n")
}

// tableKeys are the keys in the first column of the section's tables.
var tableKey = regexp.MustCompile("(?m)^\\| `([^`]+)` \\|")

func tableKeys(text string) []string {
	var out []string
	for _, m := range tableKey.FindAllStringSubmatch(text, -1) {
		out = append(out, m[1])
	}
	return out
}

// checkDocumented: every known key is in text as `key`, and every key of
// text's tables is known.
func checkDocumented(t *testing.T, where string, known map[string]bool, text string) {
	t.Helper()
	var missing []string
	for k := range known {
		if !strings.Contains(text, "`"+k+"`") {
			missing = append(missing, k)
		}
	}
	sort.Strings(missing)
	for _, k := range missing {
		t.Errorf("%s: key %s is not in docs/configuration.md", where, k)
	}
	for _, k := range tableKeys(text) {
		if !known[k] && !documentedAhead[k] {
			t.Errorf("%s: docs/configuration.md lists %s, which the decoder does not know", where, k)
		}
	}
}

// TestConfigurationReference: docs/configuration.md lists every key of
// relay.yaml, of provider files (register and poll included), of each
// verifier kind and of recorded test cases, and nothing else.
func TestConfigurationReference(t *testing.T) {
	doc := readDoc(t, "configuration.md")
	checkDocumented(t, "relay.yaml", paths(config.Config{}), section(t, doc, "## relay.yaml", ""))
	checkDocumented(t, "provider file", paths(config.ProviderConfig{}), section(t, doc, "## Provider files", "### Verifiers"))
	checkDocumented(t, "test case", paths(Case{}), section(t, doc, "## Test cases", ""))

	kinds := verifierConfigs(t)
	for kind, typ := range kinds {
		known := map[string]bool{"kind": true}
		koanfPaths(typ, "", known)
		delete(known, "kind") // every item has it; the heading names it
		checkDocumented(t, "verifier "+kind, known, section(t, doc, "#### `kind: "+kind+"`", ""))
	}
	for _, m := range regexp.MustCompile("(?m)^#### `kind: ([a-z-]+)`").FindAllStringSubmatch(doc, -1) {
		if _, ok := kinds[m[1]]; !ok {
			t.Errorf("docs/configuration.md documents verifier kind %s, which is not registered", m[1])
		}
	}

	// The walk itself must see what it is meant to: nested blocks, maps of
	// destinations, lists of routes and squashed register requests.
	for _, k := range []string{"destinations.NAME.retry.max_age", "admin.token", "spool.max_body"} {
		if !paths(config.Config{})[k] {
			t.Errorf("the walk of Config misses %s", k)
		}
	}
	for _, k := range []string{"routes[].when", "register.requests[].url", "register.requests[].unregister.method", "poll.event.data", "decrypt.iv"} {
		if !paths(config.ProviderConfig{})[k] {
			t.Errorf("the walk of ProviderConfig misses %s", k)
		}
	}
	if !slices.Contains(tableKeys(section(t, doc, "#### `kind: hmac`", "")), "timestamp.tolerance") {
		t.Error("the hmac table is not read")
	}
}

// adminRoute matches the patterns the admin handler registers: "GET /path"
// in mux.Handle calls and in its route table.
var adminRoute = regexp.MustCompile(`"((?:GET|POST|PUT|PATCH|DELETE) /[^"\s]*)"`)

// TestAdminAPIReference: every route registered in the engine's sources (and
// engine/admin's) is a heading of docs/admin-api.md, and every route heading
// there is registered.
func TestAdminAPIReference(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	api, err := filepath.Glob(filepath.Join("admin", "*.go")) // the handler's own package
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, api...)
	routes := map[string]bool{}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range adminRoute.FindAllStringSubmatch(string(b), -1) {
			routes[m[1]] = true
		}
	}
	for _, want := range []string{"GET /readyz", "POST /admin/reload", "GET /admin/events/{id}"} {
		if !routes[want] {
			t.Fatalf("route %s not found in the sources: the extraction is broken (found %v)", want, routes)
		}
	}
	doc := readDoc(t, "admin-api.md")
	headings := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^### ((?:GET|POST|PUT|PATCH|DELETE) /\S*)$`).FindAllStringSubmatch(doc, -1) {
		headings[m[1]] = true
	}
	for r := range routes {
		if !headings[r] {
			t.Errorf("route %s is not a heading (### %s) of docs/admin-api.md", r, r)
		}
	}
	for h := range headings {
		if !routes[h] {
			t.Errorf("docs/admin-api.md documents %s, which the admin handler does not serve", h)
		}
	}
}

// TestRelayExampleLoads: the commented relay.example.yaml at the repository
// root is a valid configuration (make test also runs hookrelay check on it).
func TestRelayExampleLoads(t *testing.T) {
	cfg, err := Load(filepath.Join("..", "relay.example.yaml"), true)
	if err != nil {
		t.Fatalf("relay.example.yaml: %v", err)
	}
	if len(cfg.Providers) == 0 || cfg.Destinations["broker"] == nil {
		t.Fatalf("relay.example.yaml: %d providers, destinations %v; want the shipped providers and broker", len(cfg.Providers), cfg.Destinations)
	}
}

// TestReferenceExamples: the examples in docs/ are well-formed, so that a
// user who copies one gets past the parser (that they load as configuration
// was checked with hookrelay check when they were written).
func TestReferenceExamples(t *testing.T) {
	block := regexp.MustCompile("(?s)```(yaml|json)\n(.*?)```")
	for _, name := range []string{"configuration.md", "admin-api.md"} {
		for i, m := range block.FindAllStringSubmatch(readDoc(t, name), -1) {
			var v any
			var err error
			if m[1] == "yaml" {
				err = yamlv3.Unmarshal([]byte(m[2]), &v)
			} else {
				err = json.Unmarshal([]byte(m[2]), &v)
			}
			if err != nil {
				t.Errorf("%s: %s example %d does not parse: %v\n%s", name, m[1], i, err, m[2])
			}
		}
	}
}
