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
	"syscall"

	"github.com/hookrelay/hookrelay/engine"
	"github.com/hookrelay/hookrelay/internal/redact"
)

const usage = `usage: hookrelay <command> [arguments] [flags]

commands:
  serve [--config relay.yaml]                 run the relay
  check [--config relay.yaml]                 load and validate the configuration
  try PROVIDER REQUEST_FILE [--no-verify]     dry run of a saved request: the event and its destinations
  test [PROVIDER...]                          run the providers' recorded cases (providers.d/NAME.tests/)
  sign PROVIDER BODY_FILE [--key KEY]         print a request signed as PROVIDER's verify expects
  register PROVIDER                           register this relay's callback URL with the lender (its register: block)
  unregister PROVIDER                         remove that registration
  events list [--status S] [--provider P] [--destination D] [--type T] [--key K] [--limit N] [--cursor C]
                                              list spooled events, newest first
  events show|retry|skip ID                   show an event and its attempts; requeue or skip its dead deliveries
  dead retry [--destination D] [--provider P] [--key K]
                                              requeue every matching dead delivery
  reload                                      reload the serving relay's configuration
  compact [--config relay.yaml]               shrink the spool file of a stopped relay
  version                                     print version and build info

serve, check, compact, try, test, sign, register and unregister take --config relay.yaml; events, dead and reload take
--admin URL (default $HOOKRELAY_ADMIN_URL, else http://127.0.0.1:9090) and --json, and send
$HOOKRELAY_ADMIN_TOKEN as the bearer token
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
	var c *command
	switch cmd {
	case "serve":
		c = &command{run: func(_ []string) int { return serve(*config, explicit(fs, "config"), stderr) }}
	case "check":
		c = &command{run: func(_ []string) int { return check(*config, explicit(fs, "config"), stdout, stderr) }}
	case "compact":
		c = &command{run: func(_ []string) int { return compact(*config, explicit(fs, "config"), stdout, stderr) }}
	case "try":
		noVerify := fs.Bool("no-verify", false, "skip verification")
		c = &command{args: 2, run: func(a []string) int {
			return try(*config, explicit(fs, "config"), a[0], a[1], !*noVerify, stdout, stderr)
		}}
	case "test":
		c = &command{args: -1, run: func(a []string) int { return test(*config, explicit(fs, "config"), a, stdout, stderr) }}
	case "sign":
		key := fs.String("key", "", "private key (PEM or JWK) for a jws verifier")
		path := fs.String("path", "", "request path (default: the provider's first path)")
		method := fs.String("method", "POST", "request method")
		c = &command{args: 2, run: func(a []string) int {
			return sign(*config, explicit(fs, "config"), a[0], a[1], *key, *method, *path, stdout, stderr)
		}}
	case "register", "unregister":
		c = &command{args: 1, run: func(a []string) int {
			return register(*config, explicit(fs, "config"), a[0], cmd == "unregister", stdout, stderr)
		}}
	case "events", "dead", "reload":
		c = adminCommand(cmd, fs, stdout, stderr)
	case "version":
		return printVersion(stdout)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "hookrelay: unknown command %q\n%s", cmd, usage)
		return 2
	}
	positional, err := parse(fs, args)
	if err != nil {
		return 2
	}
	if c.args >= 0 && len(positional) != c.args {
		fmt.Fprintf(stderr, "hookrelay %s: want %d arguments, got %d\n%s", cmd, c.args, len(positional), usage)
		return 2
	}
	return c.run(positional)
}

// command is a subcommand: how many positional arguments it takes (-1: any).
type command struct {
	args int
	run  func(args []string) int
}

// parse parses flags placed anywhere among the arguments, as SPEC 1 writes
// them (`hookrelay try PROVIDER FILE --config x`), and returns the others.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return positional, nil
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
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
		if p.Disabled == "" {
			if off := p.RegistrationOff(); off != "" {
				fmt.Fprintf(stdout, "  (register unavailable: %s)\n", off)
			}
			if off := p.PollingOff(); off != "" {
				fmt.Fprintf(stdout, "  (polling unavailable: %s)\n", off)
			}
		}
	}
	for _, name := range sortedKeys(cfg.Dests) {
		fmt.Fprintf(stdout, "destination %-17s %s\n", name, redact.URL(cfg.Dests[name].Config.URL))
	}
	// A weak value (a short HMAC key) does not fail check, as it does not
	// stop serve, but is said where errors are. Disabled providers are in
	// the listing above.
	for _, w := range cfg.Weak {
		fmt.Fprintln(stderr, "warning: "+w)
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
