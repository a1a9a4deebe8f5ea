package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/oklog/ulid/v2"
)

// The admin API clients beyond events, dead and reload: status,
// destinations, providers, quarantine and rejections.

// do runs one request and prints its answer: the JSON with --json, else what
// render makes of it.
func (c *cli) do(method, path string, query url.Values, body any, render func(data []byte) string) int {
	data, err := c.client.do(method, path, query, body)
	if err != nil {
		return c.fail(err)
	}
	if c.json {
		return c.printJSON(data)
	}
	fmt.Fprint(c.stdout, render(data))
	return 0
}

// items decodes a listing's items.
func (c *cli) items(data []byte) ([]object, string, error) {
	var page struct {
		Items      []object `json:"items"`
		NextCursor string   `json:"next_cursor"`
	}
	err := c.decode(data, &page)
	return page.Items, page.NextCursor, err
}

// table renders rows under a header, tab separated.
func table(header string, rows [][]string) string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	tw.Flush()
	return b.String()
}

// age renders a number of seconds as a rounded duration, "-" for none.
func (o object) age(key string) string {
	var s float64
	if raw, ok := o[key]; !ok || json.Unmarshal(raw, &s) != nil || s <= 0 {
		return "-"
	}
	if s < 1 {
		return "<1s"
	}
	return (time.Duration(s * float64(time.Second))).Round(time.Second).String()
}

func (c *cli) destinationsList() int {
	return c.list("/admin/destinations", func(items []object) string { return destinationsTable(items, true) })
}

// list prints the items of a GET list endpoint as the API's JSON (--json)
// or as table makes them.
func (c *cli) list(path string, table func([]object) string) int {
	data, err := c.client.do(http.MethodGet, path, nil, nil)
	if err != nil {
		return c.fail(err)
	}
	if c.json {
		return c.printJSON(data)
	}
	items, _, err := c.items(data)
	if err != nil {
		return c.fail(err)
	}
	fmt.Fprint(c.stdout, table(items))
	return 0
}

func destinationsTable(items []object, withURL bool) string {
	if len(items) == 0 {
		return "no destinations\n"
	}
	header := "NAME\tSTATE\tPENDING\tDEAD\tHELD KEYS\tOLDEST PENDING"
	if withURL {
		header += "\tURL"
	}
	var rows [][]string
	for _, d := range items {
		state := "active"
		if d.text("paused") == "true" {
			state = "PAUSED"
		}
		row := []string{d.text("name"), state, d.text("pending"), d.text("dead"), d.text("held_keys"), d.age("oldest_pending_seconds")}
		if withURL {
			var cfg object
			_ = json.Unmarshal(d["config"], &cfg)
			row = append(row, cfg.text("url"))
		}
		rows = append(rows, row)
	}
	return table(header, rows)
}

func (c *cli) pause(name string, paused bool) int {
	verb := "pause"
	if !paused {
		verb = "resume"
	}
	return c.do(http.MethodPost, "/admin/destinations/"+url.PathEscape(name)+"/"+verb, nil, nil, func([]byte) string {
		return fmt.Sprintf("destination %s %sd\n", clean(name), verb)
	})
}

func (c *cli) providersList() int { return c.list("/admin/providers", providersTable) }

// providerState is "enabled" or "DISABLED: why", with register and poll
// availability when they are off.
func providerState(p object) string {
	if why := p.text("disabled"); why != "-" {
		return "DISABLED: " + why
	}
	state := "enabled"
	if off := p.text("register_unavailable"); off != "-" {
		state += "; register unavailable: " + off
	}
	if off := p.text("polling_unavailable"); off != "-" {
		state += "; polling unavailable: " + off
	}
	if reg := p.text("registration"); reg != "-" {
		state += "; registration: " + reg
	}
	return state
}

func providersTable(items []object) string {
	if len(items) == 0 {
		return "no providers\n"
	}
	var rows [][]string
	for _, p := range items {
		var paths []string
		_ = json.Unmarshal(p["paths"], &paths)
		rows = append(rows, []string{p.text("name"), clean(strings.Join(paths, " ")), providerState(p)})
	}
	return table("NAME\tPATHS\tSTATE", rows)
}

// quarantineList prints a page of the quarantine; again are the flags to
// repeat in the next page's hint besides the filter's.
func (c *cli) quarantineList(f eventFilter, again []string) int {
	q, selected := f.query()
	again = append(again, selected...)
	return c.do(http.MethodGet, "/admin/quarantine", q, nil, func(data []byte) string {
		items, next, err := c.items(data)
		if err != nil {
			return err.Error() + "\n"
		}
		out := "no quarantined requests\n"
		if len(items) > 0 {
			var rows [][]string
			for _, it := range items {
				rows = append(rows, []string{it.text("id"), it.time("received_at"), it.text("provider"), it.text("path"), truncate(it.text("reason"), 100)})
			}
			out = table("ID\tRECEIVED\tPROVIDER\tPATH\tREASON", rows)
		}
		if next != "" {
			out += "\nnext: hookrelay quarantine list " + shellJoin(append(again, "--cursor", next)) + "\n"
		}
		return out
	})
}

// reprocess exits 1 when a request could not be reprocessed: it stays in
// the quarantine, and a script should hear of it.
func (c *cli) reprocess(provider string, ids []string) int {
	body := map[string]any{}
	if provider != "" {
		body["provider"] = provider
	}
	if len(ids) > 0 {
		body["ids"] = ids
	}
	data, err := c.client.do(http.MethodPost, "/admin/quarantine/reprocess", nil, body)
	if err != nil {
		return c.fail(err)
	}
	var answer struct {
		Reprocessed int `json:"reprocessed"`
		Failed      []struct {
			ID     string `json:"id"`
			Reason string `json:"reason"`
		} `json:"failed"`
	}
	if err := c.decode(data, &answer); err != nil {
		return c.fail(err)
	}
	if c.json {
		c.printJSON(data)
	} else {
		fmt.Fprintf(c.stdout, "reprocessed %s\n", plural(answer.Reprocessed, "request"))
		for _, f := range answer.Failed {
			fmt.Fprintf(c.stdout, "failed %s: %s\n", clean(f.ID), clean(f.Reason))
		}
	}
	if len(answer.Failed) > 0 {
		return 1
	}
	return 0
}

func (c *cli) rejectionsList(f eventFilter) int {
	q, _ := f.query()
	return c.do(http.MethodGet, "/admin/rejections", q, nil, func(data []byte) string {
		items, _, err := c.items(data)
		if err != nil {
			return err.Error() + "\n"
		}
		if len(items) == 0 {
			return "no rejections\n"
		}
		var rows [][]string
		for _, it := range items {
			rows = append(rows, []string{it.time("at"), it.text("provider"), it.text("path"), it.text("remote_addr"), truncate(it.text("reason"), 100)})
		}
		return table("AT\tPROVIDER\tPATH\tFROM\tREASON", rows)
	})
}

// showQuarantined prints a quarantined request, for events show.
func (c *cli) showQuarantined(data []byte) int {
	if c.json {
		return c.printJSON(data)
	}
	var q object
	if err := c.decode(data, &q); err != nil {
		return c.fail(err)
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	for _, k := range []string{"id", "status", "provider", "reason", "received_at", "method", "path", "body_bytes", "body_sha256", "headers"} {
		if _, ok := q[k]; ok {
			fmt.Fprintf(tw, "%s\t%s\n", k, truncate(q.text(k), 200))
		}
	}
	tw.Flush()
	fmt.Fprintf(c.stdout, "\nnot an event: fix the configuration, then hookrelay quarantine reprocess %s\n", q.text("id"))
	return 0
}

// quarantinedFallback shows id from the quarantine when the events API did
// not know it (err): quarantined ids are listed by events list too. It
// reports false when id is not quarantined either.
func (c *cli) quarantinedFallback(id string, err error) (int, bool) {
	var ae *adminError
	if !errors.As(err, &ae) || ae.status != http.StatusNotFound {
		return 0, false
	}
	if _, perr := ulid.ParseStrict(id); perr != nil {
		return 0, false // no quarantined request can have it either
	}
	data, qerr := c.client.do(http.MethodGet, "/admin/quarantine/"+url.PathEscape(id), nil, nil)
	if qerr != nil {
		return 0, false
	}
	return c.showQuarantined(data), true
}

// lastErrors is how many errors status shows.
const lastErrors = 5

// statusError is one line of status's last errors.
type statusError struct {
	At   time.Time `json:"at"`
	What string    `json:"what"`
}

// status prints one screen: providers, destinations, last errors.
func (c *cli) status() int {
	get := func(path string, q url.Values) ([]object, error) {
		data, err := c.client.do(http.MethodGet, path, q, nil)
		if err != nil {
			return nil, err
		}
		items, _, err := c.items(data)
		return items, err
	}
	providers, err := get("/admin/providers", nil)
	if err != nil {
		return c.fail(err)
	}
	dests, err := get("/admin/destinations", nil)
	if err != nil {
		return c.fail(err)
	}
	rejections, err := get("/admin/rejections", url.Values{"limit": {strconv.Itoa(lastErrors)}})
	if err != nil {
		return c.fail(err)
	}
	dead, err := get("/admin/events", url.Values{"status": {"dead"}, "limit": {strconv.Itoa(lastErrors)}})
	if err != nil {
		return c.fail(err)
	}
	// Privacy (SPEC 11); a relay from before it answers 404, shown as unknown.
	var privacy object
	if data, err := c.client.do(http.MethodGet, "/admin/privacy", nil, nil); err == nil {
		if err := c.decode(data, &privacy); err != nil {
			return c.fail(err)
		}
	}
	var errs []statusError
	seen := map[string]bool{} // event id and time of an attempt already listed
	attempt := func(kind, dest, id, key string, a object) {
		at, _ := time.Parse(time.RFC3339Nano, a.text("at"))
		if seen[id+" "+a.text("at")] {
			return
		}
		seen[id+" "+a.text("at")] = true
		var why []string
		for _, k := range []string{"status", "error", "response"} {
			if v := a.text(k); v != "-" && v != "0" {
				why = append(why, v)
			}
		}
		what := fmt.Sprintf("%-9s %s event %s", kind, clean(dest), id)
		if key != "" {
			what += " (key " + key + ")"
		}
		errs = append(errs, statusError{at, what + ": " + truncate(strings.Join(why, " "), 100)})
	}
	for _, rj := range rejections {
		at, _ := time.Parse(time.RFC3339Nano, rj.text("at"))
		errs = append(errs, statusError{at, fmt.Sprintf("%-9s %s %s: %s", "rejected", rj.text("provider"), rj.text("path"), truncate(rj.text("reason"), 100))})
	}
	for _, ev := range dead {
		id := ev.text("id")
		data, err := c.client.do(http.MethodGet, "/admin/events/"+url.PathEscape(id), nil, nil)
		if err != nil {
			return c.fail(err)
		}
		var detail struct {
			Deliveries []struct {
				Destination string   `json:"destination"`
				Status      string   `json:"status"`
				Attempts    []object `json:"attempts"`
			} `json:"deliveries"`
		}
		if err := c.decode(data, &detail); err != nil {
			return c.fail(err)
		}
		for _, d := range detail.Deliveries {
			if d.Status == "dead" && len(d.Attempts) > 0 {
				attempt("dead", d.Destination, id, ev.text("key"), d.Attempts[len(d.Attempts)-1])
			}
		}
	}
	// A destination that keeps failing: under the default retry policy its
	// deliveries stay pending, not dead, for a long time.
	for _, d := range dests {
		var last object
		if json.Unmarshal(d["last_failure"], &last) == nil && last != nil {
			attempt("failed", d.text("name"), last.text("event_id"), "", last)
		}
	}
	slices.SortStableFunc(errs, func(a, b statusError) int { return b.At.Compare(a.At) })
	errs = errs[:min(len(errs), lastErrors)]
	if c.json {
		b, _ := json.Marshal(map[string]any{"providers": providers, "destinations": dests, "last_errors": errs, "privacy": privacy})
		return c.printJSON(b)
	}
	fmt.Fprintln(c.stdout, "PROVIDERS")
	fmt.Fprint(c.stdout, providersTable(providers))
	fmt.Fprintln(c.stdout, "\nDESTINATIONS")
	fmt.Fprint(c.stdout, destinationsTable(dests, false))
	fmt.Fprintln(c.stdout, "\nPRIVACY")
	fmt.Fprintln(c.stdout, privacyLine(privacy))
	fmt.Fprintln(c.stdout, "\nLAST ERRORS")
	if len(errs) == 0 {
		fmt.Fprintln(c.stdout, "none")
	}
	for _, e := range errs {
		fmt.Fprintf(c.stdout, "%s  %s\n", e.At.UTC().Format("2006-01-02T15:04:05.000Z"), e.What)
	}
	return 0
}

// erase removes everything of one key (SPEC 11) and prints the counts.
func (c *cli) erase(provider, key string) int {
	path := "/admin/keys/" + url.PathEscape(provider) + "/" + url.PathEscape(key)
	return c.do(http.MethodDelete, path, nil, nil, func(data []byte) string {
		var n struct {
			Events, Deliveries, Pending, Quarantined, Dedup int
			PollStates                                      int `json:"poll_states"`
		}
		if err := c.decode(data, &n); err != nil {
			return err.Error() + "\n"
		}
		return fmt.Sprintf("erased %s key %s: %s, %s (%d pending), %s, %s, %s; its data key is destroyed\n",
			clean(provider), clean(key), plural(n.Events, "event"), plural(n.Deliveries, "delivery"), n.Pending,
			plural(n.Quarantined, "quarantined request"), plural(n.PollStates, "poll state"), plural(n.Dedup, "dedup entry"))
	})
}

// privacyLine sums up GET /admin/privacy for status.
func privacyLine(p object) string {
	switch p.text("enabled") {
	case "true":
	case "false":
		return "OFF: nothing is encrypted at rest (relay.yaml has no privacy: block)"
	default:
		return "unknown (the relay does not say)"
	}
	line := "encrypted at rest, master key " + p.text("master_key_id") + ", keystore " + clean(p.text("keystore"))
	var ro object
	if json.Unmarshal(p["rotation"], &ro) == nil && ro != nil {
		line += fmt.Sprintf("; rotation %s: %s re-wrapped, %s pending", ro.text("state"), ro.text("rewrapped"), ro.text("pending"))
		if e := ro.text("error"); e != "-" {
			line += " (" + truncate(e, 100) + ")"
		}
	}
	return line
}
