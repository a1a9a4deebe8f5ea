package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// The admin API clients (SPEC 1 and 6): hookrelay events, dead and reload.

const (
	// defaultAdmin is admin.listen's built-in default, as a URL.
	defaultAdmin = "http://127.0.0.1:9090"
	// adminURLEnv selects the admin API when --admin is not given. It is not
	// HOOKRELAY_ADMIN: that name would be read by serve as an override of the
	// whole admin: section of relay.yaml (config.envKey in engine/config).
	adminURLEnv = "HOOKRELAY_ADMIN_URL"
	// adminTokenEnv holds the bearer token; it is never printed.
	adminTokenEnv = "HOOKRELAY_ADMIN_TOKEN"
	// adminTimeout bounds one request, connection to last byte.
	adminTimeout = 10 * time.Second
	// maxAdminResponse bounds a response body read into memory.
	maxAdminResponse = 64 << 20
)

const adminHelp = `
--admin URL selects the admin API (default $` + adminURLEnv + `, else ` + defaultAdmin + `);
$` + adminTokenEnv + `, when set, is sent as the bearer token. --json prints the
server's JSON answer instead of a table.`

// adminFlags are the flags of every admin API client.
type adminFlags struct {
	admin string
	json  bool
	cmd   *cobra.Command // where they are declared, to ask whether --admin was given
}

// declare adds --admin and --json to cmd, for it and its subcommands.
func (f *adminFlags) declare(cmd *cobra.Command) {
	f.cmd = cmd
	cmd.PersistentFlags().StringVar(&f.admin, "admin", "", "admin API URL (default $"+adminURLEnv+", else "+defaultAdmin+")")
	cmd.PersistentFlags().BoolVar(&f.json, "json", false, "print the server's JSON answer")
}

// given is --admin as given, for a next page's hint: the same admin API.
func (f *adminFlags) given() []string {
	if f.cmd.PersistentFlags().Changed("admin") {
		return []string{"--admin", f.admin}
	}
	return nil
}

// cli connects to the admin API the flags and environment select.
func (f *adminFlags) cli(stdout, stderr io.Writer) (*cli, error) {
	base := f.admin
	if base == "" {
		base = os.Getenv(adminURLEnv)
	}
	if base == "" {
		base = defaultAdmin
	}
	c, err := newAdminClient(base, os.Getenv(adminTokenEnv))
	if err != nil {
		return nil, &usageError{err.Error()}
	}
	return &cli{client: c, json: f.json, stdout: stdout, stderr: stderr}, nil
}

// adminRun adapts a client method to a cobra RunE.
func (f *adminFlags) run(stdout, stderr io.Writer, do func(c *cli, args []string) int) func(*cobra.Command, []string) error {
	return func(_ *cobra.Command, args []string) error {
		c, err := f.cli(stdout, stderr)
		if err != nil {
			return err
		}
		return status(do(c, args))
	}
}

// group is a command that only holds subcommands: run alone or with an
// unknown subcommand, it is a usage error naming them.
func group(use, short string, af *adminFlags, subs ...*cobra.Command) *cobra.Command {
	g := &cobra.Command{Use: use, Short: short, GroupID: "admin", Long: short + "\n" + adminHelp, Args: cobra.ArbitraryArgs}
	af.declare(g)
	var names []string
	for _, s := range subs {
		names = append(names, s.Name())
		g.AddCommand(s)
	}
	want := names[0]
	if len(names) > 1 {
		want = strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
	}
	g.RunE = func(_ *cobra.Command, args []string) error {
		switch {
		case len(names) == 1 && len(args) == 0:
			return usagef("%s: want the subcommand %s", use, want)
		case len(args) == 0:
			return usagef("%s: missing subcommand: %s", use, want)
		}
		return usagef("%s: unknown subcommand %q: want %s", use, args[0], want)
	}
	return g
}

// adminCommands are the admin API clients (SPEC 1 and 6).
func adminCommands(stdout, stderr io.Writer) []*cobra.Command {
	var ev, dead, reload, st, dests, provs, quar, rej, er adminFlags

	var f eventFilter
	list := &cobra.Command{
		Use: "list", Short: "List spooled events, newest first", Args: noArgs,
		Example: "  hookrelay events list --status dead\n  hookrelay events list --provider kompar --key app-42 --limit 10\n" +
			"  hookrelay events list --status quarantined --json",
	}
	list.Flags().StringVar(&f.status, "status", "", "only events with this status: pending, delivered, dead, held, skipped, quarantined")
	list.Flags().StringVar(&f.provider, "provider", "", "only this provider's events")
	list.Flags().StringVar(&f.destination, "destination", "", "only events with a delivery to this destination")
	list.Flags().StringVar(&f.ty, "type", "", "only events of this type")
	list.Flags().StringVar(&f.key, "key", "", "only events of this key")
	list.Flags().IntVar(&f.limit, "limit", 0, "at most this many events (default: the server's, 50)")
	list.Flags().StringVar(&f.cursor, "cursor", "", "continue from a previous page's next_cursor")
	list.PreRunE = positiveLimit(&f.limit)
	list.RunE = ev.run(stdout, stderr, func(c *cli, _ []string) int { return c.eventsList(f, ev.given()) })
	show := &cobra.Command{
		Use: "show ID", Short: "Show an event (or a quarantined request), its deliveries and their attempts",
		Long: "Show an event, its deliveries with their attempts and, for a pending delivery, the time\n" +
			"of its next attempt. An ID of the quarantine (events list --status quarantined) shows\n" +
			"the quarantined request.",
		Example: "  hookrelay events show 01JD6X1S0Y8Z0F6C1A6R5K0ZQH", Args: exactArgs(1, "one event ID"),
		RunE: ev.run(stdout, stderr, func(c *cli, a []string) int { return c.eventsShow(a[0]) }),
	}
	retry := &cobra.Command{
		Use: "retry ID", Short: "Requeue the event's dead deliveries", Args: exactArgs(1, "one event ID"),
		Example: "  hookrelay events retry 01JD6X1S0Y8Z0F6C1A6R5K0ZQH",
		RunE: ev.run(stdout, stderr, func(c *cli, a []string) int {
			return c.count(http.MethodPost, "/admin/events/"+url.PathEscape(a[0])+"/retry", nil, "requeued")
		}),
	}
	skip := &cobra.Command{
		Use: "skip ID", Short: "Skip the event's dead or held deliveries, releasing its key", Args: exactArgs(1, "one event ID"),
		Example: "  hookrelay events skip 01JD6X1S0Y8Z0F6C1A6R5K0ZQH",
		RunE: ev.run(stdout, stderr, func(c *cli, a []string) int {
			return c.count(http.MethodPost, "/admin/events/"+url.PathEscape(a[0])+"/skip", nil, "skipped")
		}),
	}
	events := group("events", "List, show, retry and skip spooled events", &ev, list, show, retry, skip)

	var df eventFilter
	deadRetry := &cobra.Command{
		Use: "retry", Short: "Requeue every matching dead delivery", Args: noArgs,
		Example: "  hookrelay dead retry\n  hookrelay dead retry --destination broker --provider kompar",
		RunE: dead.run(stdout, stderr, func(c *cli, _ []string) int {
			body := map[string]string{}
			for k, v := range map[string]string{"destination": df.destination, "provider": df.provider, "key": df.key} {
				if v != "" {
					body[k] = v
				}
			}
			return c.count(http.MethodPost, "/admin/dead/retry", body, "requeued")
		}),
	}
	deadRetry.Flags().StringVar(&df.destination, "destination", "", "only deliveries to this destination")
	deadRetry.Flags().StringVar(&df.provider, "provider", "", "only this provider's events")
	deadRetry.Flags().StringVar(&df.key, "key", "", "only events of this key")
	deadCmd := group("dead", "Requeue dead deliveries", &dead, deadRetry)

	reloadCmd := &cobra.Command{
		Use: "reload", Short: "Reload the serving relay's configuration (as SIGHUP)", GroupID: "admin", Args: noArgs,
		Long:    "Reload the serving relay's configuration (as SIGHUP); a refused one is listed with file:line.\n" + adminHelp,
		Example: "  hookrelay reload",
		RunE:    reload.run(stdout, stderr, func(c *cli, _ []string) int { return c.reload() }),
	}
	reload.declare(reloadCmd)

	statusCmd := &cobra.Command{
		Use: "status", Short: "One screen: providers, destinations, the last errors", GroupID: "admin", Args: noArgs,
		Long: "One screen of the running relay: each provider enabled or disabled (and why), each\n" +
			"destination's pending, dead and held deliveries, its oldest pending age and whether it\n" +
			"is paused, privacy (encrypted at rest or not, a key rotation's progress), and the last\n" +
			"errors (the newest dead deliveries and rejections).\n" + adminHelp,
		Example: "  hookrelay status\n  watch hookrelay status",
		RunE:    st.run(stdout, stderr, func(c *cli, _ []string) int { return c.status() }),
	}
	st.declare(statusCmd)

	destList := &cobra.Command{
		Use: "list", Short: "List destinations with their queues", Args: noArgs, Example: "  hookrelay destinations list",
		RunE: dests.run(stdout, stderr, func(c *cli, _ []string) int { return c.destinationsList() }),
	}
	pause := &cobra.Command{
		Use: "pause NAME", Short: "Stop delivering to a destination (kept across restarts)", Args: exactArgs(1, "one destination NAME"),
		Example: "  hookrelay destinations pause broker",
		RunE:    dests.run(stdout, stderr, func(c *cli, a []string) int { return c.pause(a[0], true) }),
	}
	resume := &cobra.Command{
		Use: "resume NAME", Short: "Deliver to a paused destination again", Args: exactArgs(1, "one destination NAME"),
		Example: "  hookrelay destinations resume broker",
		RunE:    dests.run(stdout, stderr, func(c *cli, a []string) int { return c.pause(a[0], false) }),
	}
	destinations := group("destinations", "List, pause and resume destinations", &dests, destList, pause, resume)

	provList := &cobra.Command{
		Use: "list", Short: "List providers: paths, enabled or disabled and why, registration", Args: noArgs,
		Example: "  hookrelay providers list",
		RunE:    provs.run(stdout, stderr, func(c *cli, _ []string) int { return c.providersList() }),
	}
	poll := &cobra.Command{
		Use: "poll NAME KEY", Short: "Make a key known to a provider's poller", Args: exactArgs(2, "provider NAME and KEY"),
		Example: "  hookrelay providers poll lendo app-42",
		RunE: provs.run(stdout, stderr, func(c *cli, a []string) int {
			return c.do(http.MethodPost, "/admin/providers/"+url.PathEscape(a[0])+"/poll", nil, map[string]string{"key": a[1]},
				func([]byte) string { return fmt.Sprintf("polling %s for key %s\n", clean(a[0]), clean(a[1])) })
		}),
	}
	providers := group("providers", "List providers and add poll keys", &provs, provList, poll)

	var qf eventFilter
	quarList := &cobra.Command{
		Use: "list", Short: "List quarantined requests, newest first", Args: noArgs,
		Example: "  hookrelay quarantine list --provider kompar",
	}
	quarList.Flags().StringVar(&qf.provider, "provider", "", "only this provider's requests")
	quarList.Flags().IntVar(&qf.limit, "limit", 0, "at most this many (default: the server's, 50)")
	quarList.Flags().StringVar(&qf.cursor, "cursor", "", "continue from a previous page's next_cursor")
	quarList.PreRunE = positiveLimit(&qf.limit)
	quarList.RunE = quar.run(stdout, stderr, func(c *cli, _ []string) int { return c.quarantineList(qf, quar.given()) })
	var rf eventFilter
	reprocess := &cobra.Command{
		Use: "reprocess [ID...]", Short: "Run quarantined requests through the current configuration", Args: cobra.ArbitraryArgs,
		Long: "Run quarantined requests (the given IDs, or all of --provider, or all) through the current\n" +
			"configuration: those that now map are spooled and leave the quarantine. Exit 1 if any failed.",
		Example: "  hookrelay quarantine reprocess 01JD6X1S0Y8Z0F6C1A6R5K0ZQH\n  hookrelay quarantine reprocess --provider kompar",
		RunE:    quar.run(stdout, stderr, func(c *cli, a []string) int { return c.reprocess(rf.provider, a) }),
	}
	reprocess.Flags().StringVar(&rf.provider, "provider", "", "only this provider's requests")
	quarantine := group("quarantine", "List and reprocess quarantined requests", &quar, quarList, reprocess)

	var jf eventFilter
	rejList := &cobra.Command{
		Use: "list", Short: "List the last rejected requests, newest first", Args: noArgs,
		Example: "  hookrelay rejections list --provider kompar --limit 20",
	}
	rejList.Flags().StringVar(&jf.provider, "provider", "", "only this provider's rejections")
	rejList.Flags().IntVar(&jf.limit, "limit", 0, "at most this many (default: the server's, 100)")
	rejList.PreRunE = positiveLimit(&jf.limit)
	rejList.RunE = rej.run(stdout, stderr, func(c *cli, _ []string) int { return c.rejectionsList(jf) })
	rejections := group("rejections", "List rejected requests", &rej, rejList)

	eraseCmd := &cobra.Command{
		Use: "erase PROVIDER KEY", Short: "Erase everything of one key and destroy its data key (privacy)", GroupID: "admin",
		Args: exactArgs(2, "PROVIDER and KEY"),
		Long: "Erase every event, delivery (pending ones too), attempt, dedup entry, poll state and\n" +
			"quarantined request of the provider's KEY, and destroy the key's data key, so that\n" +
			"copies of its records (a backup of the spool) can no longer be read. Prints what was\n" +
			"removed. It cannot be undone.\n" + adminHelp,
		Example: "  hookrelay erase kompar KMP-2024-000123\n  hookrelay erase kompar KMP-2024-000123 --json",
	}
	eraseCmd.RunE = func(cmd *cobra.Command, args []string) error {
		if args[0] == "" || args[1] == "" {
			return usagef("erase: PROVIDER and KEY must not be empty")
		}
		return er.run(stdout, stderr, func(c *cli, a []string) int { return c.erase(a[0], a[1]) })(cmd, args)
	}
	er.declare(eraseCmd)

	return []*cobra.Command{statusCmd, events, deadCmd, destinations, providers, quarantine, rejections, reloadCmd, eraseCmd}
}

// positiveLimit is the PreRunE of a list with --limit: a --limit given must
// be at least 1 (without one the server's default stands).
func positiveLimit(limit *int) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, _ []string) error {
		if cmd.Flags().Changed("limit") && *limit < 1 {
			return usagef("%s: --limit: must be a positive number", name(cmd))
		}
		return nil
	}
}

// eventFilter is the selection of the events, quarantine and rejections
// lists and of dead retry; zero values select everything.
type eventFilter struct {
	status, provider, destination, ty, key, cursor string
	limit                                          int
}

// query is f as a list's query, and again the flags that select the same
// list (all but --cursor), for the next page's hint.
func (f eventFilter) query() (q url.Values, again []string) {
	q = url.Values{}
	for _, p := range []struct{ name, v string }{
		{"status", f.status}, {"provider", f.provider}, {"destination", f.destination},
		{"type", f.ty}, {"key", f.key},
	} {
		if p.v != "" {
			q.Set(p.name, p.v)
			again = append(again, "--"+p.name, p.v)
		}
	}
	if f.limit > 0 {
		q.Set("limit", strconv.Itoa(f.limit))
		again = append(again, "--limit", strconv.Itoa(f.limit))
	}
	if f.cursor != "" {
		q.Set("cursor", f.cursor)
	}
	return q, again
}

// adminClient talks to one admin API.
type adminClient struct {
	base  string // scheme://host[:port][/prefix], without a trailing slash
	token string // empty: no Authorization header
	http  *http.Client
}

// newAdminClient accepts a URL, or a bare host:port as admin.listen is
// written (http is assumed).
func newAdminClient(base, token string) (*adminClient, error) {
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("--admin: %q is not an http(s) URL of the admin API", base)
	}
	origin := u.Scheme + "://" + u.Host
	client := &http.Client{
		Timeout: adminTimeout,
		// A redirect may stay on the admin API's scheme and host only: the
		// token must not travel anywhere else.
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if req.URL.Scheme+"://"+req.URL.Host != origin {
				return fmt.Errorf("refusing a redirect to %s://%s", req.URL.Scheme, req.URL.Host)
			}
			if len(via) >= 10 {
				return errors.New("stopped after 10 redirects")
			}
			return nil
		},
	}
	return &adminClient{base: strings.TrimRight(u.String(), "/"), token: token, http: client}, nil
}

// adminError is a non-2xx answer: the server's error and, for a refused
// reload, its list of configuration errors.
type adminError struct {
	status int
	msg    string
	errs   []string
}

func (e *adminError) Error() string { return e.msg }

// do sends one request (body, when not nil, as JSON) and returns the body of
// a 2xx answer; anything else is an *adminError or a transport error.
func (c *adminClient) do(method, path string, query url.Values, body any) ([]byte, error) {
	target := c.base + path
	if len(query) > 0 {
		target += "?" + query.Encode()
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, target, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "hookrelay-cli")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAdminResponse+1))
	if err != nil {
		return nil, fmt.Errorf("admin API: reading the answer: %w", err)
	}
	if len(data) > maxAdminResponse {
		return nil, fmt.Errorf("admin API: answer larger than %d bytes", maxAdminResponse)
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error  string   `json:"error"`
			Errors []string `json:"errors"`
		}
		if json.Unmarshal(data, &e) != nil || e.Error == "" {
			e.Error = "admin API answered " + resp.Status
		}
		if resp.StatusCode == http.StatusUnauthorized && c.token == "" {
			e.Error += " (" + adminTokenEnv + " is not set)"
		}
		return nil, &adminError{status: resp.StatusCode, msg: e.Error, errs: e.Errors}
	}
	return data, nil
}
