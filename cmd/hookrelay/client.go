package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
)

// The admin API clients (SPEC 1 and 6): hookrelay events, dead and reload.

const (
	// defaultAdmin is admin.listen's built-in default, as a URL.
	defaultAdmin = "http://127.0.0.1:9090"
	// adminURLEnv selects the admin API when --admin is not given. It is not
	// HOOKRELAY_ADMIN: that name would be read by serve as an override of the
	// whole admin: section of relay.yaml (engine.envKey).
	adminURLEnv = "HOOKRELAY_ADMIN_URL"
	// adminTokenEnv holds the bearer token; it is never printed.
	adminTokenEnv = "HOOKRELAY_ADMIN_TOKEN"
	// adminTimeout bounds one request, connection to last byte.
	adminTimeout = 10 * time.Second
	// maxAdminResponse bounds a response body read into memory.
	maxAdminResponse = 64 << 20
)

var clientUsage = map[string]string{
	"events": `usage:
  hookrelay events list [--status S] [--provider P] [--destination D] [--type T] [--key K] [--limit N] [--cursor C] [--json]
  hookrelay events show ID [--json]
  hookrelay events retry ID       requeue the event's dead deliveries
  hookrelay events skip ID        skip the event's dead or held deliveries, releasing its key
`,
	"dead": `usage:
  hookrelay dead retry [--destination D] [--provider P] [--key K]   requeue every matching dead delivery
`,
	"reload": `usage:
  hookrelay reload                reload the serving relay's configuration (as SIGHUP)
`,
}

const clientFlagsUsage = `
flags:
  --admin URL   admin API (default $` + adminURLEnv + `, else ` + defaultAdmin + `);
                $` + adminTokenEnv + `, when set, is sent as the bearer token
  --json        print the server's JSON answer instead of a table
`

// adminCommand declares the flags of an admin API client (name is events,
// dead or reload) on fs and returns the command that runs it. Flags that do
// not apply to the subcommand given are usage errors.
func adminCommand(name string, fs *flag.FlagSet, stdout, stderr io.Writer) *command {
	fs.Usage = func() { fmt.Fprint(stderr, clientUsage[name], clientFlagsUsage) }
	admin := fs.String("admin", "", "admin API URL")
	asJSON := fs.Bool("json", false, "print the server's JSON")
	var f eventFilter
	switch name {
	case "events":
		fs.StringVar(&f.status, "status", "", "only events with this status")
		fs.StringVar(&f.ty, "type", "", "only events of this type")
		fs.IntVar(&f.limit, "limit", 0, "at most this many events (0: the server's default)")
		fs.StringVar(&f.cursor, "cursor", "", "continue from a previous page's next_cursor")
		fallthrough
	case "dead":
		fs.StringVar(&f.provider, "provider", "", "only this provider's events")
		fs.StringVar(&f.destination, "destination", "", "only deliveries to this destination")
		fs.StringVar(&f.key, "key", "", "only events of this key")
	}
	return &command{args: -1, run: func(args []string) int {
		usageErr := func(format string, a ...any) int {
			fmt.Fprintf(stderr, "hookrelay %s: %s\n%s", name, fmt.Sprintf(format, a...), clientUsage[name])
			return 2
		}
		sub, want, allowed := name, 0, []string{"admin", "json"}
		switch name {
		case "events":
			if len(args) == 0 {
				return usageErr("missing subcommand: list, show, retry or skip")
			}
			sub, args = args[0], args[1:]
			switch sub {
			case "list":
				allowed = append(allowed, "status", "provider", "destination", "type", "key", "limit", "cursor")
			case "show", "retry", "skip":
				want = 1
			default:
				return usageErr("unknown subcommand %q: want list, show, retry or skip", sub)
			}
		case "dead":
			if len(args) == 0 || args[0] != "retry" {
				return usageErr("want the subcommand retry")
			}
			sub, args = args[0], args[1:]
			allowed = append(allowed, "destination", "provider", "key")
		}
		switch {
		case want == 1 && (len(args) != 1 || args[0] == ""):
			return usageErr("%s: want one event ID", sub)
		case want == 0 && len(args) > 0:
			return usageErr("%s: unexpected argument %q", sub, args[0])
		}
		var stray []string
		fs.Visit(func(fl *flag.Flag) {
			if !slices.Contains(allowed, fl.Name) {
				stray = append(stray, "--"+fl.Name)
			}
		})
		if len(stray) > 0 {
			return usageErr("%s does not take %s", sub, strings.Join(stray, ", "))
		}
		if explicit(fs, "limit") && f.limit < 1 {
			return usageErr("--limit: must be a positive number")
		}
		base := *admin
		if base == "" {
			base = os.Getenv(adminURLEnv)
		}
		if base == "" {
			base = defaultAdmin
		}
		c, err := newAdminClient(base, os.Getenv(adminTokenEnv))
		if err != nil {
			return usageErr("%v", err)
		}
		cl := &cli{client: c, json: *asJSON, stdout: stdout, stderr: stderr}
		switch name + " " + sub {
		case "events list":
			var again []string // the flags that select this list, for the next page's hint
			if explicit(fs, "admin") {
				again = append(again, "--admin", *admin)
			}
			return cl.eventsList(f, again)
		case "events show":
			return cl.eventsShow(args[0])
		case "events retry":
			return cl.count(http.MethodPost, "/admin/events/"+url.PathEscape(args[0])+"/retry", nil, "requeued")
		case "events skip":
			return cl.count(http.MethodPost, "/admin/events/"+url.PathEscape(args[0])+"/skip", nil, "skipped")
		case "dead retry":
			body := map[string]string{}
			for k, v := range map[string]string{"destination": f.destination, "provider": f.provider, "key": f.key} {
				if v != "" {
					body[k] = v
				}
			}
			return cl.count(http.MethodPost, "/admin/dead/retry", body, "requeued")
		default: // reload
			return cl.reload()
		}
	}}
}

// eventFilter is the selection of events list and dead retry; zero values
// select everything.
type eventFilter struct {
	status, provider, destination, ty, key, cursor string
	limit                                          int
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

// cli runs one client command and renders its answer.
type cli struct {
	client *adminClient
	json   bool
	stdout io.Writer
	stderr io.Writer
}

// fail prints err (and a refused reload's every error) and returns exit code 1.
func (c *cli) fail(err error) int {
	fmt.Fprintf(c.stderr, "hookrelay: %s\n", clean(err.Error()))
	var ae *adminError
	if errors.As(err, &ae) {
		for _, e := range ae.errs {
			fmt.Fprintln(c.stderr, clean(e))
		}
	}
	return 1
}

// printJSON prints an answer as the server sent it, indented.
func (c *cli) printJSON(data []byte) int {
	var out bytes.Buffer
	if err := json.Indent(&out, data, "", "  "); err != nil {
		return c.fail(fmt.Errorf("admin API: answer is not JSON: %w", err))
	}
	out.WriteByte('\n')
	c.stdout.Write(out.Bytes())
	return 0
}

func (c *cli) decode(data []byte, v any) error {
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("admin API: unexpected answer: %w", err)
	}
	return nil
}

func (c *cli) eventsList(f eventFilter, again []string) int {
	q := url.Values{}
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
	data, err := c.client.do(http.MethodGet, "/admin/events", q, nil)
	if err != nil {
		return c.fail(err)
	}
	if c.json {
		return c.printJSON(data)
	}
	var page struct {
		Items      []object `json:"items"`
		NextCursor string   `json:"next_cursor"`
	}
	if err := c.decode(data, &page); err != nil {
		return c.fail(err)
	}
	if len(page.Items) == 0 {
		fmt.Fprintln(c.stdout, "no events")
	} else {
		tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tRECEIVED\tPROVIDER\tTYPE\tKEY\tSTATUS")
		for _, ev := range page.Items {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", ev.text("id"), ev.time("received_at"),
				ev.text("provider"), ev.text("type"), ev.text("key"), ev.text("status"))
		}
		tw.Flush()
	}
	if page.NextCursor != "" {
		again = append(again, "--cursor", page.NextCursor)
		fmt.Fprintf(c.stdout, "\nnext: hookrelay events list %s\n", shellJoin(again))
	}
	return 0
}

// showFields are the event fields events show prints first, in this order;
// any others the server adds follow, sorted.
var showFields = []string{"id", "status", "provider", "source", "type", "key", "sequence", "idempotency_id",
	"received_at", "occurred_at", "data", "raw"}

func (c *cli) eventsShow(id string) int {
	data, err := c.client.do(http.MethodGet, "/admin/events/"+url.PathEscape(id), nil, nil)
	if err != nil {
		return c.fail(err)
	}
	if c.json {
		return c.printJSON(data)
	}
	var detail struct {
		Event      object `json:"event"`
		Deliveries []struct {
			Destination string   `json:"destination"`
			Status      string   `json:"status"`
			Attempts    []object `json:"attempts"`
		} `json:"deliveries"`
	}
	if err := c.decode(data, &detail); err != nil {
		return c.fail(err)
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	names := append([]string(nil), showFields...)
	var extra []string
	for k := range detail.Event {
		if !slices.Contains(showFields, k) {
			extra = append(extra, k)
		}
	}
	slices.Sort(extra)
	for _, k := range append(names, extra...) {
		if _, ok := detail.Event[k]; ok {
			fmt.Fprintf(tw, "%s\t%s\n", k, truncate(detail.Event.text(k), 120))
		}
	}
	tw.Flush()
	if len(detail.Deliveries) == 0 {
		fmt.Fprintln(c.stdout, "\nno deliveries")
	}
	for _, d := range detail.Deliveries {
		fmt.Fprintf(c.stdout, "\ndelivery %s: %s, %s\n", clean(d.Destination), clean(d.Status), plural(len(d.Attempts), "attempt"))
		if len(d.Attempts) == 0 {
			continue
		}
		tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  AT\tSTATUS\tDURATION\tERROR\tRESPONSE")
		for _, a := range d.Attempts {
			status := a.text("status")
			if status == "0" {
				status = "-" // no HTTP answer
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", a.time("at"), status, a.duration("duration_ms"),
				a.text("error"), truncate(a.text("response"), 80))
		}
		tw.Flush()
	}
	return 0
}

// count runs a POST answered with {"<verb>": N} and prints "<verb> N deliveries".
func (c *cli) count(method, path string, body any, verb string) int {
	data, err := c.client.do(method, path, nil, body)
	if err != nil {
		return c.fail(err)
	}
	if c.json {
		return c.printJSON(data)
	}
	var answer map[string]json.RawMessage
	if err := c.decode(data, &answer); err != nil {
		return c.fail(err)
	}
	var n int
	if err := json.Unmarshal(answer[verb], &n); err != nil {
		return c.fail(fmt.Errorf("admin API: unexpected answer: no %q count", verb))
	}
	fmt.Fprintf(c.stdout, "%s %s\n", verb, plural(n, "delivery"))
	return 0
}

func (c *cli) reload() int {
	data, err := c.client.do(http.MethodPost, "/admin/reload", nil, nil)
	if err != nil {
		return c.fail(err)
	}
	if c.json {
		return c.printJSON(data)
	}
	var answer struct {
		Reloaded *bool `json:"reloaded"`
	}
	if err := c.decode(data, &answer); err != nil {
		return c.fail(err)
	}
	if answer.Reloaded != nil && !*answer.Reloaded {
		return c.fail(errors.New("configuration not reloaded"))
	}
	fmt.Fprintln(c.stdout, "configuration reloaded")
	return 0
}

// object is a JSON object whose fields are rendered whatever their type, so
// that the client keeps working as the admin API grows.
type object map[string]json.RawMessage

// text renders a field for a table: a string as itself, null or a missing
// field as "-", anything else as compact JSON.
func (o object) text(key string) string {
	raw, ok := o[key]
	if !ok || string(raw) == "null" {
		return "-"
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		if s = strings.TrimSpace(clean(s)); s == "" {
			return "-"
		}
		return s
	}
	var out bytes.Buffer
	if json.Compact(&out, raw) != nil {
		return clean(string(raw))
	}
	return clean(out.String())
}

// time renders a timestamp field in UTC to the millisecond.
func (o object) time(key string) string {
	s := o.text(key)
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return s
	}
	return t.UTC().Format("2006-01-02T15:04:05.000Z")
}

// duration renders a field in milliseconds as a duration ("120ms", "1.5s").
func (o object) duration(key string) string {
	var ms float64
	if raw, ok := o[key]; !ok || json.Unmarshal(raw, &ms) != nil {
		return o.text(key)
	}
	return time.Duration(ms * float64(time.Millisecond)).Round(time.Millisecond).String()
}

// clean makes text from the server (much of it from lenders' requests) safe
// for one table cell on a terminal: whitespace becomes a space, other control
// characters (escape sequences among them) become U+FFFD.
func clean(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\n' || r == '\r' || r == '\t':
			return ' '
		case unicode.IsControl(r):
			return unicode.ReplacementChar
		}
		return r
	}, s)
}

// truncate keeps the first n characters of s, marking a cut with "...".
func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n]) + "..."
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	if strings.HasSuffix(noun, "y") {
		return fmt.Sprintf("%d %sies", n, strings.TrimSuffix(noun, "y"))
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// shellJoin quotes arguments for a POSIX shell where they need it.
func shellJoin(args []string) string {
	quoted := make([]string, len(args))
	for i, a := range args {
		safe := a != ""
		for _, r := range a {
			if !(r < unicode.MaxASCII && (unicode.IsLetter(r) || unicode.IsDigit(r) || strings.ContainsRune("-_./:=@%+,", r))) {
				safe = false
				break
			}
		}
		if safe {
			quoted[i] = a
		} else {
			quoted[i] = "'" + strings.ReplaceAll(clean(a), "'", `'\''`) + "'"
		}
	}
	return strings.Join(quoted, " ")
}
