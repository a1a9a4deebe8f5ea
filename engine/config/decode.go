package config

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/go-viper/mapstructure/v2"
	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/rawbytes"
	"github.com/knadh/koanf/v2"
	yamlv3 "go.yaml.in/yaml/v3"
)

// Size is a byte count written as 1024, "256KiB" or "1MiB".
type Size int64

// UnmarshalText reads sizes with B, KiB, MiB, GiB (or KB, MB, GB) suffixes.
func (s *Size) UnmarshalText(b []byte) error {
	t := strings.TrimSpace(string(b))
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000}, {"B", 1}} {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 {
		return fmt.Errorf("%q is not a size such as 1MiB", string(b))
	}
	*s = Size(n * mult)
	return nil
}

// DecodeMap copies a loaded map into out strictly: every key must be a field.
// Problems come back as *FieldError values naming their path.
func DecodeMap(in any, out any) error {
	var md mapstructure.Metadata
	d, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{
		TagName:          "koanf",
		Result:           out,
		Metadata:         &md,
		WeaklyTypedInput: true,
		// mapstructure matches keys to fields ignoring case by default:
		// `Token:` or `PASSWORD:` would load, and everything that goes by a
		// key's name (the admin API's redaction) would miss them. Only the
		// lower-case keys written in the contract are fields; others are
		// unknown.
		MatchName: func(key, field string) bool { return key == field },
		DecodeHook: mapstructure.ComposeDecodeHookFunc(
			mapstructure.StringToTimeDurationHookFunc(),
			mapstructure.TextUnmarshallerHookFunc(),
		),
	})
	if err != nil {
		return err
	}
	var errs []error
	if err := d.Decode(in); err != nil {
		errs = append(errs, flattenDecode(err)...)
	}
	for _, k := range md.Unused {
		errs = append(errs, &FieldError{Path: dotMapKeys(k), Msg: "unknown field"})
	}
	return errors.Join(errs...)
}

// FieldError is a problem at a config path such as "verify[0].signature.header".
type FieldError struct {
	Path string
	Msg  string
}

func (e *FieldError) Error() string { return e.Path + ": " + e.Msg }

// FieldErr is a problem at path, relative to the block being compiled; the
// block's loader adds the block's own path and the line.
func FieldErr(path, msg string) error { return &FieldError{Path: path, Msg: msg} }

func flattenDecode(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flattenDecode(e)...)
		}
		return out
	}
	var de *mapstructure.DecodeError
	if errors.As(err, &de) {
		return []error{&FieldError{Path: dotMapKeys(de.Name()), Msg: de.Unwrap().Error()}}
	}
	return []error{err}
}

var mapIndex = regexp.MustCompile(`\[([^\]]*[^0-9\]][^\]]*)\]`)

// dotMapKeys turns mapstructure's map entries, "destinations[broker].url",
// into the YAML path "destinations.broker.url"; list indexes stay "[0]".
func dotMapKeys(name string) string { return mapIndex.ReplaceAllString(name, ".$1") }

// MissingSecret is an env: or file: value that could not be read.
type MissingSecret struct {
	Path string // "verify[0].secret"
	Msg  string
}

// ResolveSecrets replaces every "env:NAME" and "file:PATH" string in m, in
// place, by the value it names. Unreadable ones become "" and are returned.
func ResolveSecrets(v any, path []string, base string) []MissingSecret {
	var missing []MissingSecret
	switch x := v.(type) {
	case map[string]any:
		for k, val := range x {
			p := slices.Concat(path, []string{k})
			if s, ok := val.(string); ok {
				if k == "jwks_url" && strings.HasPrefix(s, "file://") {
					continue // a file URL the jws verifier reads keys from, not a file: secret
				}
				r, m := resolveSecret(s, base)
				x[k] = r
				if m != "" {
					missing = append(missing, MissingSecret{JoinPath(p), m})
				}
				continue
			}
			missing = append(missing, ResolveSecrets(val, p, base)...)
		}
	case []any:
		for i, val := range x {
			p := slices.Concat(path, []string{fmt.Sprintf("[%d]", i)})
			if s, ok := val.(string); ok {
				r, m := resolveSecret(s, base)
				x[i] = r
				if m != "" {
					missing = append(missing, MissingSecret{JoinPath(p), m})
				}
				continue
			}
			missing = append(missing, ResolveSecrets(val, p, base)...)
		}
	}
	return missing
}

// JoinPath joins path parts into "a.b[0].c".
func JoinPath(p []string) string { return strings.ReplaceAll(strings.Join(p, "."), ".[", "[") }

func resolveSecret(s, base string) (value, problem string) {
	switch {
	case strings.HasPrefix(s, "env:"):
		name := strings.TrimPrefix(s, "env:")
		v, ok := os.LookupEnv(name)
		switch {
		case !ok:
			return "", "environment variable " + name + " is not set"
		case v == "":
			return "", "environment variable " + name + " is empty"
		}
		return v, ""
	case strings.HasPrefix(s, "file:"):
		p := RelTo(base, strings.TrimPrefix(s, "file:"))
		b, err := os.ReadFile(p)
		if err != nil {
			return "", "secret file " + p + " cannot be read"
		}
		// An empty file is as good as none: taken as a value it would be
		// an empty token or key, which anyone can present.
		v := strings.TrimRight(string(b), "\r\n")
		if v == "" {
			return "", "secret file " + p + " is empty"
		}
		return v, ""
	}
	return s, ""
}

// Doc finds the line of a config path in the file it came from.
type Doc struct {
	file string
	root *yamlv3.Node
}

// ReadYAML reads a YAML file as a map (for values) and a node tree (for lines).
func ReadYAML(file string) (*Doc, map[string]any, error) {
	doc, ko, err := readYAML(file)
	if err != nil {
		return nil, nil, err
	}
	return doc, ko.Raw(), nil
}

// readYAML is ReadYAML keeping koanf, whose Raw is a fresh copy each time.
func readYAML(file string) (*Doc, *koanf.Koanf, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, nil, err
	}
	doc, err := parseYAML(file, data)
	if err != nil {
		return nil, nil, err
	}
	ko := koanf.New(delim)
	if err := ko.Load(rawbytes.Provider(data), yaml.Parser()); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", file, err)
	}
	return doc, ko, nil
}

func parseYAML(file string, data []byte) (*Doc, error) {
	var n yamlv3.Node
	if err := yamlv3.Unmarshal(data, &n); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	d := &Doc{file: file}
	if len(n.Content) > 0 {
		d.root = n.Content[0]
	}
	return d, nil
}

// line returns the line of the deepest node of path ("a.b[2].c") present in
// the file, or 0 when the path is not in the file at all.
func (d *Doc) line(path string) int {
	if d == nil || d.root == nil {
		return 0
	}
	n, line := d.root, 0
	for _, part := range splitPath(path) {
		next := (*yamlv3.Node)(nil)
		if idx, err := strconv.Atoi(strings.Trim(part, "[]")); err == nil && strings.HasPrefix(part, "[") {
			if n.Kind == yamlv3.SequenceNode && idx < len(n.Content) {
				next = n.Content[idx]
				line = next.Line
			}
		} else if n.Kind == yamlv3.MappingNode {
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == part {
					next, line = n.Content[i+1], n.Content[i].Line
					break
				}
			}
		}
		if next == nil {
			break
		}
		n = next
	}
	if line == 0 {
		return d.root.Line
	}
	return line
}

// splitPath splits "verify[0].signature" into verify, [0], signature.
func splitPath(p string) []string {
	var parts []string
	for _, s := range strings.Split(p, ".") {
		for {
			i := strings.Index(s, "[")
			if i < 0 {
				break
			}
			if i > 0 {
				parts = append(parts, s[:i])
			}
			j := strings.Index(s, "]")
			if j < i {
				break
			}
			parts = append(parts, s[i:j+1])
			s = s[j+1:]
		}
		if s != "" {
			parts = append(parts, s)
		}
	}
	return parts
}
