package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
)

// The admin clients' side that people read: each command's answer rendered
// as a table or JSON, and the small text helpers it uses.

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
	if _, err := c.stdout.Write(out.Bytes()); err != nil {
		return c.fail(err)
	}
	return 0
}

func (c *cli) decode(data []byte, v any) error {
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("admin API: unexpected answer: %w", err)
	}
	return nil
}

// eventsList prints a page of events; again are the flags to repeat in the
// next page's hint besides the filter's.
func (c *cli) eventsList(f eventFilter, again []string) int {
	q, selected := f.query()
	again = append(again, selected...)
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
		if code, ok := c.quarantinedFallback(id, err); ok {
			return code
		}
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
			NextAt      string   `json:"next_attempt_at"`
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
		next := ""
		if d.Status == "pending" {
			// The spool keeps the next attempt's time once one failed;
			// before that the delivery is due as soon as its key's turn comes.
			next = ", next attempt now"
			if t, err := time.Parse(time.RFC3339Nano, d.NextAt); err == nil && t.Year() > 1 {
				next = ", next attempt at " + t.UTC().Format("2006-01-02T15:04:05.000Z")
				if wait := time.Until(t); wait > 0 {
					next += " (in " + wait.Round(time.Second).String() + ")"
				}
			}
		}
		fmt.Fprintf(c.stdout, "\ndelivery %s: %s, %s%s\n", clean(d.Destination), clean(d.Status), plural(len(d.Attempts), "attempt"), next)
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
			if !shellSafe(r) {
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

// shellSafe reports whether r needs no quoting in a POSIX shell word.
func shellSafe(r rune) bool {
	return r < unicode.MaxASCII && (unicode.IsLetter(r) || unicode.IsDigit(r) || strings.ContainsRune("-_./:=@%+,", r))
}
