// Command hookrelay runs and operates the webhook relay (SPEC 1).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/hookrelay/hookrelay/engine"
)

const usage = `usage: hookrelay <command> [flags]

commands:
  serve [--config relay.yaml]   run the relay
  check [--config relay.yaml]   load and validate the configuration
  version                       print version and build info
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, args := args[0], args[1:]
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	config := fs.String("config", "relay.yaml", "path of relay.yaml")
	switch cmd {
	case "serve":
		if fs.Parse(args) != nil {
			return 2
		}
		return serve(*config, explicit(fs, "config"), stderr)
	case "check":
		if fs.Parse(args) != nil {
			return 2
		}
		return check(*config, explicit(fs, "config"), stdout, stderr)
	case "version":
		info, _ := debug.ReadBuildInfo()
		fmt.Fprintf(stdout, "hookrelay %s (%s)\n", info.Main.Version, info.GoVersion)
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "hookrelay: unknown command %q\n%s", cmd, usage)
	return 2
}

// explicit reports whether the flag was given, so that a --config naming a
// missing file is an error rather than a silent fall back to defaults.
func explicit(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

func load(path string, explicit bool, stderr io.Writer) (*engine.Config, bool) {
	cfg, err := engine.Load(path, explicit)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return nil, false
	}
	return cfg, true
}

func check(path string, explicitPath bool, stdout, stderr io.Writer) int {
	cfg, ok := load(path, explicitPath, stderr)
	if !ok {
		return 1
	}
	src := cfg.File
	if src == "" {
		src = "built-in defaults"
	}
	fmt.Fprintf(stdout, "config %s: ingest %s, admin %s, spool %s\n", src, cfg.Listen, cfg.Admin.Listen, cfg.Spool.Path)
	for _, p := range cfg.Providers {
		state := "ok"
		if p.Disabled != "" {
			state = "DISABLED: " + p.Disabled
		}
		fmt.Fprintf(stdout, "provider %-20s %v  %s\n", p.Name, p.Paths, state)
	}
	for _, name := range sortedKeys(cfg.Dests) {
		fmt.Fprintf(stdout, "destination %-17s %s\n", name, cfg.Dests[name].Config.URL)
	}
	return 0
}

func serve(path string, explicit bool, stderr io.Writer) int {
	cfg, ok := load(path, explicit, stderr)
	if !ok {
		return 1
	}
	log := newLogger(cfg, stderr)
	for _, w := range cfg.Warnings {
		log.Warn(w)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := engine.Serve(ctx, cfg, log); err != nil && !errors.Is(err, context.Canceled) {
		log.Error("hookrelay stopped", "error", err)
		return 1
	}
	return 0
}

func newLogger(cfg *engine.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Log.Level))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Log.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}
