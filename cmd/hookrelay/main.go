// Command hookrelay runs and operates the webhook relay (SPEC 1).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/hookrelay/hookrelay/engine"
	"github.com/hookrelay/hookrelay/engine/config"
)

const rootLong = `hookrelay receives lenders' webhooks, verifies and maps them, spools them and
delivers them to the broker's destinations in order per key.

serve, check, compact, try, test, sign, send, register and unregister read
--config (default relay.yaml; built-in defaults when it is absent and not named).
The admin API clients (status, events, dead, destinations, providers,
quarantine, rejections, reload) take --admin URL (default $HOOKRELAY_ADMIN_URL,
else http://127.0.0.1:9090) and send $HOOKRELAY_ADMIN_TOKEN as the bearer token.
Every command that prints takes --json.

Exit status: 0 success, 1 an error (a refused configuration, an API error, a
failed case), 2 a usage error.`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// exitCode ends a command with a status whose message was already printed.
type exitCode int

func (c exitCode) Error() string { return fmt.Sprintf("exit status %d", int(c)) }

// status turns a command's exit status into its error.
func status(code int) error {
	if code == 0 {
		return nil
	}
	return exitCode(code)
}

// usageError is a wrong command line: exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return &usageError{fmt.Sprintf(format, a...)} }

// run runs one command line; tests call it in-process, so every run builds
// its own command tree.
func run(args []string, stdout, stderr io.Writer) int {
	root := newRoot(stdout, stderr)
	root.SetArgs(args)
	err := root.Execute()
	var code exitCode
	var ue *usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &code):
		return int(code)
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "hookrelay: %s\n", ue.msg)
	default: // cobra's own: an unknown command, a bad flag
		fmt.Fprintf(stderr, "hookrelay: %s\n", err)
	}
	fmt.Fprintln(stderr, "Run 'hookrelay --help' or 'hookrelay COMMAND --help' for usage.")
	return 2
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "hookrelay",
		Short:         "A configuration-driven webhook relay",
		Long:          rootLong,
		SilenceErrors: true,
		SilenceUsage:  true,
		// A bare `hookrelay` is a usage error: the help goes to stderr.
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unknown command %q", args[0])
			}
			cmd.SetOut(stderr)
			_ = cmd.Help()
			return exitCode(2)
		},
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(flagError)
	root.AddGroup(&cobra.Group{ID: "run", Title: "Run and configure:"}, &cobra.Group{ID: "author", Title: "Write and test providers:"},
		&cobra.Group{ID: "admin", Title: "Operate a running relay (admin API):"})
	root.SetHelpCommandGroupID("run")
	root.SetCompletionCommandGroupID("run")
	root.AddCommand(configCommands(stdout, stderr)...)
	root.AddCommand(adminCommands(stdout, stderr)...)
	version := &cobra.Command{Use: "version", Short: "Print version and build info", GroupID: "run", Args: noArgs}
	versionJSON := version.Flags().Bool("json", false, "print them as JSON")
	version.RunE = func(*cobra.Command, []string) error { return status(printVersion(stdout, *versionJSON)) }
	root.AddCommand(version)
	return root
}

// globalFlags are flags some command takes; given to one that does not, they
// are "X does not take --flag" rather than unknown.
var globalFlags = []string{"config", "admin", "json"}

// flagError words a flag parsing error as the old flag package did, and says
// "does not take" for a flag a sibling command knows.
func flagError(cmd *cobra.Command, err error) error {
	var ne *pflag.NotExistError
	var ie *pflag.InvalidValueError
	switch {
	case errors.As(err, &ne):
		flag := ne.GetSpecifiedName()
		if slices.Contains(globalFlags, flag) || familyHasFlag(cmd, flag) {
			return usagef("%s does not take --%s", name(cmd), flag)
		}
		return usagef("%s: flag provided but not defined: --%s", name(cmd), strings.TrimLeft(flag, "-"))
	case errors.As(err, &ie):
		return usagef("%s: invalid value %q for --%s: %v", name(cmd), ie.GetValue(), ie.GetFlag().Name, errors.Unwrap(ie))
	}
	return usagef("%s: %v", name(cmd), err)
}

// name is the command's path without "hookrelay ".
func name(cmd *cobra.Command) string {
	return strings.TrimPrefix(cmd.CommandPath(), cmd.Root().Name()+" ")
}

// familyHasFlag reports whether a command under cmd's top-level command
// (events for `events show`) defines the flag.
func familyHasFlag(cmd *cobra.Command, name string) bool {
	top := cmd
	for top.HasParent() && top.Parent().HasParent() {
		top = top.Parent()
	}
	var walk func(c *cobra.Command) bool
	walk = func(c *cobra.Command) bool {
		if c.Flags().Lookup(name) != nil || c.PersistentFlags().Lookup(name) != nil {
			return true
		}
		return slices.ContainsFunc(c.Commands(), walk)
	}
	return walk(top)
}

// exactArgs wants n positional arguments, named in the usage error.
func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n || slices.Contains(args, "") {
			return usagef("%s: want %s, got %d arguments", name(cmd), what, len(args))
		}
		return nil
	}
}

// noArgs refuses positional arguments.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("%s: unexpected argument %q", name(cmd), args[0])
	}
	return nil
}

// runWithConfig declares --config on cmd and makes its RunE call run with
// the path and whether it was given (so that a --config naming a missing
// file is an error rather than a silent fall back to defaults); run's
// result is the exit status.
func runWithConfig(cmd *cobra.Command, run func(path string, explicit bool, args []string) int) {
	path := cmd.Flags().String("config", "relay.yaml", "path of relay.yaml")
	cmd.RunE = func(_ *cobra.Command, args []string) error {
		return status(run(*path, cmd.Flags().Changed("config"), args))
	}
}

// configCommands are the commands that read relay.yaml.
func configCommands(stdout, stderr io.Writer) []*cobra.Command {
	serveCmd := &cobra.Command{
		Use: "serve", Short: "Run the relay", GroupID: "run", Args: noArgs,
		Long: "Run the relay: the ingest listener, the admin API and delivery, until SIGTERM or SIGINT\n" +
			"(which drain for shutdown_timeout). SIGHUP reloads the configuration.",
		Example: "  hookrelay serve\n  hookrelay serve --config /etc/hookrelay/relay.yaml",
	}
	runWithConfig(serveCmd, func(path string, explicit bool, _ []string) int {
		return serve(path, explicit, stderr)
	})

	checkCmd := &cobra.Command{
		Use: "check", Short: "Load and validate the configuration", GroupID: "run", Args: noArgs,
		Long: "Load relay.yaml and providers.d as serve would and list the providers (enabled or\n" +
			"disabled, and why) and destinations; exit 1 with file:line errors when it is refused.",
		Example: "  hookrelay check\n  hookrelay check --config deploy/relay.yaml --json",
	}
	checkJSON := checkCmd.Flags().Bool("json", false, "print the result as JSON")
	runWithConfig(checkCmd, func(path string, explicit bool, _ []string) int {
		return check(path, explicit, *checkJSON, stdout, stderr)
	})

	compactCmd := &cobra.Command{
		Use: "compact", Short: "Shrink the spool file of a stopped relay", GroupID: "run", Args: noArgs,
		Example: "  hookrelay compact --config relay.yaml",
	}
	compactJSON := compactCmd.Flags().Bool("json", false, "print the sizes as JSON")
	runWithConfig(compactCmd, func(path string, explicit bool, _ []string) int {
		return compact(path, explicit, *compactJSON, stdout, stderr)
	})

	migrateCmd := &cobra.Command{
		Use: "migrate", Short: "Copy a stopped relay's queue between a bbolt file and JetStream", GroupID: "run", Args: noArgs,
		Long: "Copy the pending, dead and held deliveries (with their events and attempts), the events still\n" +
			"in their dedup window, quarantined requests, paused destinations and poller state of a stopped\n" +
			"relay: --from FILE copies the bbolt spool FILE into the JetStream spool relay.yaml names,\n" +
			"--to FILE copies that JetStream spool into the bbolt spool FILE. Safe to run again: what is\n" +
			"already there is not copied twice.",
		Example: "  hookrelay migrate --config relay.yaml --from ./data/spool.db\n" +
			"  hookrelay migrate --config relay.yaml --to ./data/spool.db",
	}
	migrateFrom := migrateCmd.Flags().String("from", "", "bbolt spool file to copy into the JetStream spool")
	migrateTo := migrateCmd.Flags().String("to", "", "bbolt spool file to copy the JetStream spool into")
	migrateKeys := migrateCmd.Flags().String("keystore", "", "the bbolt side's keystore, with privacy (default: keys.db beside it)")
	migrateJSON := migrateCmd.Flags().Bool("json", false, "print the counts as JSON")
	runWithConfig(migrateCmd, func(path string, explicit bool, _ []string) int {
		if (*migrateFrom == "") == (*migrateTo == "") {
			fmt.Fprintln(stderr, "hookrelay migrate: give one of --from FILE or --to FILE")
			return 2
		}
		opts := engine.MigrateOptions{Bolt: *migrateFrom, Keystore: *migrateKeys}
		if *migrateTo != "" {
			opts.Bolt, opts.ToBolt = *migrateTo, true
		}
		return migrate(path, explicit, opts, *migrateJSON, stdout, stderr)
	})

	tryCmd := &cobra.Command{
		Use: "try PROVIDER REQUEST_FILE", Short: "Dry run of a saved request: the event and its destinations", GroupID: "author",
		Long: "Run a saved request (raw HTTP as sign prints it, or JSON {method, path, headers, body})\n" +
			"through PROVIDER's verification and mapping and print the outcome as JSON. Nothing is spooled.",
		Example: "  hookrelay sign acme body.json > req.http && hookrelay try acme req.http\n" +
			"  hookrelay try acme req.json --no-verify",
		Args: exactArgs(2, "PROVIDER and REQUEST_FILE"),
	}
	noVerify := tryCmd.Flags().Bool("no-verify", false, "skip verification")
	runWithConfig(tryCmd, func(path string, explicit bool, a []string) int {
		return try(path, explicit, a[0], a[1], !*noVerify, stdout, stderr)
	})

	testCmd := &cobra.Command{
		Use: "test [PROVIDER...]", Short: "Run the providers' recorded cases (providers.d/NAME.tests/)", GroupID: "author",
		Long: "Run every recorded case of the named providers (all when none is named): a request in,\n" +
			"the expected status, outcome, event and destinations out. Exit 1 when a case fails.",
		Example: "  hookrelay test\n  hookrelay test acme --json\n  hookrelay test --junit report.xml",
		Args:    cobra.ArbitraryArgs,
	}
	testJSON := testCmd.Flags().Bool("json", false, "print the results as JSON")
	testJUnit := testCmd.Flags().String("junit", "", "also write the results as JUnit XML to this file (for CI)")
	runWithConfig(testCmd, func(path string, explicit bool, a []string) int {
		return test(path, explicit, a, *testJSON, *testJUnit, stdout, stderr)
	})

	signCmd := &cobra.Command{
		Use: "sign PROVIDER BODY_FILE", Short: "Print a request signed as PROVIDER's verify expects", GroupID: "author",
		Long: "Print, as raw HTTP/1.1 (or with --curl as a curl command), a request with BODY_FILE as\n" +
			"its body, signed with PROVIDER's configured secrets; try reads it back.",
		Example: "  hookrelay sign acme body.json > req.http\n  hookrelay sign acme body.json --curl | sh\n" +
			"  hookrelay sign jwsprov body.json --key private.pem --path /in/jwsprov/tenant-1",
		Args: exactArgs(2, "PROVIDER and BODY_FILE"),
	}
	so := signOptions{}
	signCmd.Flags().StringVar(&so.keyFile, "key", "", "private key file (PEM or JWK) for a jws verifier")
	signCmd.Flags().StringVar(&so.path, "path", "", "request path (default: the provider's first path)")
	signCmd.Flags().StringVar(&so.method, "method", "POST", "request method")
	signCmd.Flags().BoolVar(&so.curl, "curl", false, "print a curl command instead of the raw request")
	runWithConfig(signCmd, func(path string, explicit bool, a []string) int {
		return sign(path, explicit, a[0], a[1], so, stdout, stderr)
	})

	sendCmd := sendCommand(stdout, stderr)
	cmds := []*cobra.Command{serveCmd, checkCmd, compactCmd, migrateCmd, tryCmd, testCmd, signCmd, sendCmd, sinkCommand(stdout, stderr)}
	for _, c := range []*cobra.Command{tryCmd, signCmd, sendCmd} {
		c.ValidArgsFunction = completeProvider(c, 1)
	}
	testCmd.ValidArgsFunction = completeProvider(testCmd, -1)
	for _, verb := range []string{"register", "unregister"} {
		c := &cobra.Command{
			Use: verb + " PROVIDER", GroupID: "run", Args: exactArgs(1, "one PROVIDER"),
			Example: "  hookrelay " + verb + " kompar",
		}
		if verb == "register" {
			c.Short = "Register this relay's callback URL with the lender (its register: block)"
		} else {
			c.Short = "Remove that registration"
		}
		c.ValidArgsFunction = completeProvider(c, 0)
		asJSON := c.Flags().Bool("json", false, "print the result as JSON")
		runWithConfig(c, func(path string, explicit bool, a []string) int {
			return register(path, explicit, a[0], verb == "unregister", *asJSON, stdout, stderr)
		})
		cmds = append(cmds, c)
	}
	return cmds
}

// completeProvider completes a provider name as the first argument (and
// after it a file, when more follow: n > 0), or as every argument (n < 0),
// from the configuration --config names.
func completeProvider(cmd *cobra.Command, n int) cobra.CompletionFunc {
	return func(_ *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 && n >= 0 {
			if len(args) <= n {
				return nil, cobra.ShellCompDirectiveDefault // a file
			}
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		path := "relay.yaml"
		if f := cmd.Flags().Lookup("config"); f != nil {
			path = f.Value.String()
		}
		cfg, err := engine.Load(path, cmd.Flags().Changed("config"))
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		var names []cobra.Completion
		for _, p := range cfg.Providers {
			if !slices.Contains(args, p.Name) {
				names = append(names, p.Name)
			}
		}
		return names, cobra.ShellCompDirectiveNoFileComp
	}
}

func load(path string, explicit bool, stderr io.Writer) (*engine.Config, bool) {
	cfg, err := engine.Load(path, explicit)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return nil, false
	}
	return cfg, true
}

// checkResult is check's --json output.
type checkResult struct {
	Config       string             `json:"config"`
	Listen       string             `json:"listen"`
	Admin        string             `json:"admin"`
	Spool        string             `json:"spool"`
	Privacy      string             `json:"privacy,omitempty"`
	Providers    []checkProvider    `json:"providers"`
	Destinations []checkDestination `json:"destinations"`
	Warnings     []string           `json:"warnings"`
}

type checkProvider struct {
	Name                string   `json:"name"`
	Paths               []string `json:"paths"`
	Disabled            string   `json:"disabled,omitempty"`
	RegisterUnavailable string   `json:"register_unavailable,omitempty"`
	PollingUnavailable  string   `json:"polling_unavailable,omitempty"`
}

type checkDestination struct {
	Name string `json:"name"`
	URL  string `json:"url"`
}

func check(path string, explicitPath, asJSON bool, stdout, stderr io.Writer) int {
	cfg, ok := load(path, explicitPath, stderr)
	if !ok {
		return 1
	}
	src := cfg.File
	if src == "" {
		src = "built-in defaults"
	}
	shownSpool := cfg.Spool.Path
	if n := cfg.Spool.NATS; cfg.Spool.Kind == config.SpoolJetStream && n != nil {
		shownSpool = fmt.Sprintf("jetstream stream %s on %s", n.Stream, strings.Join(n.URLs, ","))
	}
	res := checkResult{Config: src, Listen: cfg.Listen, Admin: cfg.Admin.Listen, Spool: shownSpool,
		Providers: []checkProvider{}, Destinations: []checkDestination{}, Warnings: append([]string{}, cfg.Weak...)}
	if off := cfg.PrivacyOff(); off != "" {
		res.Warnings = append(res.Warnings, off)
	}
	res.Privacy = cfg.PrivacyOn()
	for _, p := range cfg.Providers {
		cp := checkProvider{Name: p.Name, Paths: p.Paths, Disabled: p.Disabled}
		if p.Disabled == "" {
			cp.RegisterUnavailable, cp.PollingUnavailable = p.RegistrationOff(), p.PollingOff()
		}
		res.Providers = append(res.Providers, cp)
	}
	for _, name := range sortedKeys(cfg.Destinations) {
		res.Destinations = append(res.Destinations, checkDestination{name, cfg.Destinations[name].ShownURL()})
	}
	if asJSON {
		return printValue(stdout, res)
	}
	fmt.Fprintf(stdout, "config %s: ingest %s, admin %s, spool %s\n", src, cfg.Listen, cfg.Admin.Listen, shownSpool)
	if on := cfg.PrivacyOn(); on != "" {
		fmt.Fprintf(stdout, "privacy %s\n", on)
	}
	for _, p := range res.Providers {
		state := "ok"
		if p.Disabled != "" {
			state = "DISABLED: " + p.Disabled
		}
		fmt.Fprintf(stdout, "provider %-20s %v  %s\n", p.Name, p.Paths, state)
		if p.RegisterUnavailable != "" {
			fmt.Fprintf(stdout, "  (register unavailable: %s)\n", p.RegisterUnavailable)
		}
		if p.PollingUnavailable != "" {
			fmt.Fprintf(stdout, "  (polling unavailable: %s)\n", p.PollingUnavailable)
		}
	}
	for _, d := range res.Destinations {
		fmt.Fprintf(stdout, "destination %-17s %s\n", d.Name, d.URL)
	}
	// A weak value (a short HMAC key) does not fail check, as it does not
	// stop serve, but is said where errors are. Disabled providers are in
	// the listing above.
	for _, w := range cfg.Weak {
		fmt.Fprintln(stderr, "warning: "+w)
	}
	if off := cfg.PrivacyOff(); off != "" {
		fmt.Fprintln(stderr, "warning: "+off)
	}
	return 0
}

// printValue prints v as indented JSON.
func printValue(stdout io.Writer, v any) int {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		fmt.Fprintln(stdout, err)
		return 1
	}
	if _, err := stdout.Write(append(b, '\n')); err != nil {
		return 1 // stdout is gone: nowhere to say so
	}
	return 0
}

func serve(path string, explicit bool, stderr io.Writer) int {
	cfg, ok := load(path, explicit, stderr)
	if !ok {
		return 1
	}
	// Lines go out in batches (an access log's cost, logwriter.go); all
	// of them before serve returns.
	out := newLogWriter(stderr)
	defer out.Close()
	log := newLogger(cfg, out)
	// Weak values only: serve's own line per provider says which are
	// disabled and why, once.
	for _, w := range cfg.Weak {
		log.Warn(w)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if file := os.Getenv(cpuProfileEnv); file != "" {
		stopProfile, err := startCPUProfile(file)
		if err != nil {
			log.Error("cpu profile not started", "error", err)
			return 1
		}
		defer stopProfile()
		log.Warn("writing a CPU profile until the relay stops", "file", file)
	}
	if err := engine.Serve(ctx, cfg, log); err != nil && !errors.Is(err, context.Canceled) {
		log.Error("hookrelay stopped", "error", err)
		return 1
	}
	return 0
}

func newLogger(cfg *engine.Config, w *logWriter) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Log.Level))
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewJSONHandler(w, opts)
	if cfg.Log.Format == "text" {
		h = slog.NewTextHandler(w, opts)
	}
	return slog.New(flushOnWarn{h, w})
}
