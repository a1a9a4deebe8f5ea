package provider

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"

	"github.com/hookrelay/hookrelay/engine/config"
	"github.com/hookrelay/hookrelay/transforms"
	"github.com/hookrelay/hookrelay/verifiers"
)

// Compile compiles the steps of provider file pc (read from file, with doc
// for its lines) into p: verify, decrypt, require, event, routes and
// respond.status. Each problem is added to errs at its file:line, each
// warning (a short HMAC key) to warnings. missing are the paths of the
// secrets that are not set ("verify[0].secret"): the provider is then still
// checked in everything else, and its verifiers are dropped, since a
// disabled provider verifies nothing. known reports whether a destination
// of that name exists.
func (p *Pipeline) Compile(pc *config.ProviderConfig, file string, doc *config.Doc, missing map[string]bool,
	known func(dest string) bool, errs, warnings *config.Errors) {
	switch v := pc.Verify.(type) {
	case string:
		if v != "none" {
			errs.Add(doc, "verify", "verify: must be a list of checks, or none")
		}
	case []any:
		if len(v) == 0 {
			errs.Add(doc, "verify", "verify: an empty list must be written `verify: none`")
		}
		dir, err := filepath.Abs(filepath.Dir(file))
		if err != nil {
			errs.Add(doc, "verify", "verify: %v", err)
		}
		for i, item := range v {
			at := fmt.Sprintf("verify[%d]", i)
			vf, err := buildVerifier(item, under(missing, at), dir)
			if err != nil {
				errs.AddField(doc, at, err)
				continue
			}
			if vf == nil {
				continue // a disabled provider's verifier, built only to be checked
			}
			if w, ok := vf.(verifiers.Warner); ok {
				for _, ce := range w.Warnings() {
					warnings.AddField(doc, at, ce)
				}
			}
			p.Verifiers = append(p.Verifiers, vf)
			if kf, ok := vf.(verifiers.KeyFetcher); ok {
				// Keys are fetched before a request takes a max_inflight
				// place (FetchKeys), never while it holds one.
				kf.FetchOutside()
				p.Fetchers = append(p.Fetchers, kf)
			}
		}
	case nil:
		errs.Add(doc, "verify", "verify: required (write `verify: none` to accept unauthenticated requests)")
	default:
		errs.Add(doc, "verify", "verify: must be a list of checks, or none")
	}

	if pc.Decrypt != nil {
		d, err := transforms.CompileDecrypt(*pc.Decrypt, missing["decrypt.key"])
		if err != nil {
			errs.AddField(doc, "decrypt", err)
		}
		p.Decrypt = d
	}

	for i, src := range pc.Require {
		at := fmt.Sprintf("require[%d]", i)
		prog, err := transforms.CompileBool(src)
		if err != nil {
			errs.AddField(doc, at, err)
			continue
		}
		p.Require = append(p.Require, prog)
	}

	m, err := transforms.CompileMapping(pc.Event)
	if err != nil {
		errs.AddField(doc, "event", err)
	}
	p.Mapping = m

	for i, r := range pc.Routes {
		at := fmt.Sprintf("routes[%d]", i)
		rt := Route{To: r.To}
		if r.When != "" {
			if rt.When, err = transforms.CompileBool(r.When); err != nil {
				errs.AddField(doc, at+".when", err)
			}
		}
		if len(r.To) == 0 {
			errs.Add(doc, at+".to", "%s.to: at least one destination is required", at)
		}
		for j, d := range r.To {
			if !known(d) {
				errs.Add(doc, fmt.Sprintf("%s.to[%d]", at, j), "%s.to: unknown destination %q", at, d)
			}
		}
		p.Routes = append(p.Routes, rt)
	}
	if len(pc.Routes) == 0 {
		errs.Add(doc, "routes", "routes: at least one route is required")
	}

	p.RespondStatus = pc.Respond.Status
	if p.RespondStatus == 0 {
		p.RespondStatus = http.StatusOK
	}
	if p.RespondStatus < 200 || p.RespondStatus > 299 {
		errs.Add(doc, "respond.status", "respond.status: %d is not a 2xx status", p.RespondStatus)
	}
}

// buildVerifier builds one `verify` entry. missing are the fields of its
// secrets that are not set (the provider loads disabled): the entry is then
// built with a stand-in for each, so that every other field is still checked
// (SPEC 3), and the verifier is dropped (nil, nil), since a disabled provider
// verifies nothing. Files the entry names are relative to dir, the
// provider file's directory (SPEC 2).
func buildVerifier(item any, missing map[string]bool, dir string) (verifiers.Verifier, error) {
	m, ok := item.(map[string]any)
	if !ok {
		return nil, errors.New("must be a map with a kind")
	}
	kind, _ := m["kind"].(string)
	if kind == "" {
		return nil, config.FieldErr("kind", "required")
	}
	rest := make(map[string]any, len(m))
	for k, v := range m {
		if k != "kind" {
			rest[k] = copyTree(v)
		}
	}
	build := func(out any) error {
		if err := config.DecodeMap(rest, out); err != nil {
			return err
		}
		if r, ok := out.(verifiers.PathResolver); ok {
			r.ResolvePaths(dir)
		}
		return nil
	}
	if len(missing) == 0 {
		return verifiers.Default.New(kind, build)
	}
	standIn(rest, nil, missing)
	_, err := verifiers.Default.New(kind, build)
	var ce *verifiers.ConfigError
	if err == nil || (errors.As(err, &ce) && missing[ce.Field]) {
		return nil, nil // fine, or only a stand-in's fault
	}
	return nil, err
}

// secretStandIn takes the place of a missing secret while a disabled
// provider is checked: a Standard Webhooks secret of 32 bytes, which reads
// as a plain secret, token or password too.
var secretStandIn = "whsec_" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0xa5}, 32))

// standIn puts secretStandIn in each string of v at a path in missing.
func standIn(v any, path []string, missing map[string]bool) {
	visit := func(p []string, val any, set func(any)) {
		if _, ok := val.(string); ok && missing[config.JoinPath(p)] {
			set(secretStandIn)
			return
		}
		standIn(val, p, missing)
	}
	switch x := v.(type) {
	case map[string]any:
		for k, val := range x {
			visit(append(path[:len(path):len(path)], k), val, func(s any) { x[k] = s })
		}
	case []any:
		for i, val := range x {
			visit(append(path[:len(path):len(path)], fmt.Sprintf("[%d]", i)), val, func(s any) { x[i] = s })
		}
	}
}

// under returns the paths of missing that lie inside the block at prefix,
// relative to it.
func under(missing map[string]bool, prefix string) map[string]bool {
	var in map[string]bool
	for p := range missing {
		if rel, ok := strings.CutPrefix(p, prefix+"."); ok {
			if in == nil {
				in = map[string]bool{}
			}
			in[rel] = true
		}
	}
	return in
}

// copyTree copies the maps and lists of a decoded YAML value.
func copyTree(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, val := range x {
			out[k] = copyTree(val)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, val := range x {
			out[i] = copyTree(val)
		}
		return out
	}
	return v
}
