package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http/httputil"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/hookrelay/hookrelay/engine"
)

// try prints what the relay would do with a saved request (SPEC 1).
func try(config string, explicit bool, provider, file string, verify bool, stdout, stderr io.Writer) int {
	cfg, ok := load(config, explicit, stderr)
	if !ok {
		return 1
	}
	p := cfg.Provider(provider)
	if p == nil {
		fmt.Fprintf(stderr, "hookrelay try: no provider %q\n", provider)
		return 1
	}
	data, err := os.ReadFile(file)
	if err != nil {
		fmt.Fprintln(stderr, "hookrelay try:", err)
		return 1
	}
	req, body, err := engine.ReadRequest(data)
	if err != nil {
		fmt.Fprintln(stderr, "hookrelay try:", err)
		return 1
	}
	t := p.Try(context.Background(), req, body, time.Now(), verify)
	out, _ := json.MarshalIndent(t, "", "  ")
	fmt.Fprintln(stdout, string(out))
	if t.Outcome != "accepted" {
		return 1
	}
	return 0
}

// test runs recorded provider cases and exits 1 when any fails.
func test(config string, explicit bool, providers []string, stdout, stderr io.Writer) int {
	failed, err := engine.RunCases(config, explicit, providers, stdout)
	if err != nil {
		fmt.Fprintln(stderr, "hookrelay test:", err)
		return 1
	}
	if failed > 0 {
		return 1
	}
	return 0
}

// sign prints, as raw HTTP/1.1, a request with BODY_FILE signed the way the
// provider verifies; `hookrelay try` reads it back.
func sign(config string, explicit bool, provider, file, keyFile, method, path string, stdout, stderr io.Writer) int {
	cfg, ok := load(config, explicit, stderr)
	if !ok {
		return 1
	}
	p := cfg.Provider(provider)
	if p == nil {
		fmt.Fprintf(stderr, "hookrelay sign: no provider %q\n", provider)
		return 1
	}
	body, err := os.ReadFile(file)
	if err != nil {
		fmt.Fprintln(stderr, "hookrelay sign:", err)
		return 1
	}
	var key []byte
	if keyFile != "" {
		if key, err = os.ReadFile(keyFile); err != nil {
			fmt.Fprintln(stderr, "hookrelay sign:", err)
			return 1
		}
	}
	if path == "" {
		path = p.Paths[0]
		if strings.Contains(path, "{") {
			fmt.Fprintf(stderr, "hookrelay sign: %s has parameters; give the concrete path with --path\n", path)
			return 1
		}
	}
	req, err := engine.NewRequest(method, path, nil, body)
	if err == nil {
		req, body, err = engine.SignRequest(p, req, body, time.Now(), key)
	}
	if err != nil {
		fmt.Fprintln(stderr, "hookrelay sign:", err)
		return 1
	}
	req.Host = cfg.Listen
	if strings.HasPrefix(req.Host, ":") {
		req.Host = "127.0.0.1" + req.Host
	}
	// DumpRequest writes the headers as set: the reader of the dump needs the length.
	req.Header.Set("Content-Length", strconv.Itoa(len(body)))
	dump, err := httputil.DumpRequest(req, true)
	if err != nil {
		fmt.Fprintln(stderr, "hookrelay sign:", err)
		return 1
	}
	stdout.Write(dump)
	return 0
}
