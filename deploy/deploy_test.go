// Package deploy holds no code: its test keeps the example deployment files
// (alert rules, dashboard, Dockerfile, Kubernetes manifests, systemd unit)
// true to the relay they deploy. `make deploy-check` runs it with promtool,
// systemd-analyze and an image build.
package deploy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.yaml.in/yaml/v3"

	"github.com/hookrelay/hookrelay/engine"
)

// TestFilesParse: every YAML (every document of it) and JSON file in deploy/
// parses.
func TestFilesParse(t *testing.T) {
	n := 0
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		switch filepath.Ext(path) {
		case ".yaml", ".yml":
			n++
			yamlDocs(t, path)
		case ".json":
			n++
			var v any
			if err := json.Unmarshal(read(t, path), &v); err != nil {
				t.Errorf("%s: %v", path, err)
			}
		}
		return nil
	})
	must(t, err)
	if n < 5 {
		t.Errorf("only %d YAML and JSON files found in deploy/", n)
	}
}

// TestMetricNamesExist: every metric the alert rules, their unit tests and
// the dashboard name is on a running relay's /metrics, so renaming a metric
// in the code cannot silently blind an alert. The relay is driven until
// every family they use has a series: an accepted, a rejected, a delivered
// and a dead event, and one held behind it.
func TestMetricNamesExist(t *testing.T) {
	families := scrapeBusyRelay(t)

	used := map[string][]string{} // metric name -> where
	var rules struct {
		Groups []struct {
			Rules []struct{ Alert, Record, Expr string }
		}
	}
	yamlInto(t, "alerts.yaml", &rules)
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			for _, name := range metricNames(r.Expr) {
				used[name] = append(used[name], "alerts.yaml "+r.Alert+r.Record)
			}
		}
	}
	var tests struct {
		Tests []struct {
			InputSeries []struct{ Series string } `yaml:"input_series"`
		}
	}
	yamlInto(t, "alerts_test.yaml", &tests)
	for _, tc := range tests.Tests {
		for _, s := range tc.InputSeries {
			name, _, _ := strings.Cut(s.Series, "{")
			used[name] = append(used[name], "alerts_test.yaml input series")
		}
	}
	var dash any
	must(t, json.Unmarshal(read(t, "grafana/hookrelay.json"), &dash))
	walkJSON(dash, func(key, value string) {
		if key == "expr" || key == "definition" {
			for _, name := range metricNames(value) {
				used[name] = append(used[name], "grafana/hookrelay.json "+value)
			}
		}
	})
	if len(used) < 12 {
		t.Fatalf("only %d metric names found in the rules and the dashboard: %v", len(used), used)
	}
	for _, want := range []string{"hookrelay_dead", "hookrelay_held_keys", "hookrelay_oldest_pending_seconds",
		"hookrelay_ingest_requests_total", "hookrelay_provider_enabled", "hookrelay_ingest_duration_seconds_bucket",
		"hookrelay_delivery_duration_seconds_bucket", "hookrelay_deliveries_total", "hookrelay_pending"} {
		if used[want] == nil {
			t.Errorf("%s is used by no rule or panel", want)
		}
	}
	for name, where := range used {
		if name == "up" { // Prometheus's own, per scrape target
			continue
		}
		if !exposed(families, name) {
			t.Errorf("%s (used in %s) is not on /metrics", name, strings.Join(where, "; "))
		}
	}
}

// metricNameRE finds metric names in PromQL: this project's and those of the
// Go and process collectors, and `up`.
var metricNameRE = regexp.MustCompile(`\b(?:hookrelay|go|process)_[a-zA-Z0-9_]+\b|\bup\b`)

func metricNames(expr string) []string { return metricNameRE.FindAllString(expr, -1) }

// exposed reports whether name is a family on /metrics, or a histogram's or
// summary's _bucket, _sum or _count series.
func exposed(families map[string]*dto.MetricFamily, name string) bool {
	if families[name] != nil {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && families[base] != nil {
			switch families[base].GetType() {
			case dto.MetricType_HISTOGRAM:
				return true
			case dto.MetricType_SUMMARY:
				return suffix != "_bucket"
			}
		}
	}
	return false
}

// scrapeBusyRelay starts a relay with an enabled and a disabled provider,
// delivers one event, kills another with a permanent 400 and holds a third
// behind it, rejects one request, and returns its /metrics.
func scrapeBusyRelay(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	dest := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if bytes.Contains(body, []byte(`"doomed"`)) {
			w.WriteHeader(http.StatusBadRequest) // permanent: dead at once
		}
	}))
	t.Cleanup(dest.Close)
	dir := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(dir, "providers.d"), 0o755))
	relay := "listen: 127.0.0.1:18080\nadmin: { listen: 127.0.0.1:19090 }\nspool: { path: " + filepath.Join(dir, "spool.db") + " }\n" +
		"providers_dir: " + filepath.Join(dir, "providers.d") + "\n" +
		"destinations:\n  broker:\n    url: " + dest.URL + "\n"
	must(t, os.WriteFile(filepath.Join(dir, "relay.yaml"), []byte(relay), 0o644))
	provider := func(path, token string) string {
		return "paths: [" + path + "]\nverify:\n  - kind: bearer\n    token: " + token + "\n" +
			"event:\n  id: body.id\n  key: body.key\n  type: body.type\nroutes:\n  - to: [broker]\n"
	}
	must(t, os.WriteFile(filepath.Join(dir, "providers.d", "lender.yaml"), []byte(provider("/in/lender", "lender-token-0123456789")), 0o644))
	t.Setenv("HOOKRELAY_DEPLOY_TEST_MISSING", "")
	must(t, os.WriteFile(filepath.Join(dir, "providers.d", "off.yaml"), []byte(provider("/in/off", "env:HOOKRELAY_DEPLOY_TEST_MISSING")), 0o644))

	cfg, err := engine.Load(filepath.Join(dir, "relay.yaml"), true)
	must(t, err)
	r, err := engine.Open(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	must(t, err)
	must(t, r.Start())
	ingest, admin := httptest.NewServer(r.IngestHandler()), httptest.NewServer(r.AdminHandler())
	t.Cleanup(func() {
		ingest.Close()
		admin.Close()
		_ = r.Close(5 * time.Second)
	})

	post := func(token, body string, want int) {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, ingest.URL+"/in/lender", strings.NewReader(body))
		must(t, err)
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		must(t, err)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("POST %s: status %d, want %d", body, resp.StatusCode, want)
		}
	}
	post("lender-token-0123456789", `{"id":"e1","key":"k1","type":"ok"}`, 200)
	post("lender-token-0123456789", `{"id":"e2","key":"k2","type":"doomed"}`, 200)
	post("lender-token-0123456789", `{"id":"e3","key":"k2","type":"waits"}`, 200)
	post("wrong-token", `{"id":"e4","key":"k3","type":"ok"}`, 401)

	var families map[string]*dto.MetricFamily
	deadline := time.Now().Add(10 * time.Second)
	for {
		families = scrape(t, admin.URL)
		if value(families, "hookrelay_held_keys") == 1 && value(families, "hookrelay_deliveries_total") == 2 {
			return families
		}
		if time.Now().After(deadline) {
			t.Fatalf("no delivered, dead and held event after 10s; held_keys %v, deliveries %v",
				value(families, "hookrelay_held_keys"), value(families, "hookrelay_deliveries_total"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func scrape(t *testing.T, adminURL string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(adminURL + "/metrics")
	must(t, err)
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(resp.Body)
	must(t, err)
	return families
}

// value sums a counter's or gauge's series.
func value(families map[string]*dto.MetricFamily, name string) float64 {
	sum := 0.0
	for _, m := range families[name].GetMetric() {
		sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
	}
	return sum
}

// TestDockerfile: the image is FROM scratch only (nothing to pull, nothing
// but the binary to patch), runs as a non-root user, keeps the spool in a
// volume that the container configuration points at, and exposes both
// listeners.
func TestDockerfile(t *testing.T) {
	ins := dockerfile(t, "Dockerfile")
	get := func(cmd string) []string {
		var out []string
		for _, in := range ins {
			if in.cmd == cmd {
				out = append(out, in.args)
			}
		}
		return out
	}
	froms := get("FROM")
	if len(froms) == 0 {
		t.Fatal("no FROM")
	}
	for _, f := range froms {
		if strings.Fields(f)[0] != "scratch" {
			t.Errorf("FROM %s: only scratch, so that the image builds offline and carries nothing but the binary", f)
		}
	}
	users := get("USER")
	if len(users) == 0 {
		t.Fatal("no USER: the relay would run as root")
	}
	user, _, _ := strings.Cut(users[len(users)-1], ":")
	if uid, err := strconv.Atoi(user); err != nil || uid == 0 {
		t.Errorf("USER %s: want a numeric non-root uid (Kubernetes runAsNonRoot can only check a number)", users[len(users)-1])
	}
	var volumes []string
	for _, v := range get("VOLUME") {
		var list []string
		if json.Unmarshal([]byte(v), &list) != nil {
			list = strings.Fields(v)
		}
		volumes = append(volumes, list...)
	}
	var cfg struct {
		Listen string
		Admin  struct{ Listen, Token string }
		Spool  struct{ Path string }
		Dir    string `yaml:"providers_dir"`
	}
	yamlInto(t, "relay.container.yaml", &cfg)
	if !slices.Contains(volumes, filepath.Dir(cfg.Spool.Path)) {
		t.Errorf("VOLUME %v does not hold the spool %s of relay.container.yaml", volumes, cfg.Spool.Path)
	}
	exposed := strings.Fields(strings.Join(get("EXPOSE"), " "))
	for _, l := range []string{cfg.Listen, cfg.Admin.Listen} {
		_, port, _ := net.SplitHostPort(l)
		if !slices.Contains(exposed, port) {
			t.Errorf("EXPOSE %v lacks port %s (listen %s)", exposed, port, l)
		}
	}
	copies := strings.Join(get("COPY"), "\n")
	for _, want := range []string{" /hookrelay", " /etc/hookrelay/relay.yaml", " " + cfg.Dir + "/", " /etc/ssl/certs/ca-certificates.crt", "--chown=" + users[len(users)-1]} {
		if !strings.Contains(copies, want) {
			t.Errorf("no COPY with %q", want)
		}
	}
	if ep := get("ENTRYPOINT"); len(ep) != 1 || ep[0] != `["/hookrelay"]` {
		t.Errorf("ENTRYPOINT %v, want [\"/hookrelay\"]", ep)
	}
	// The Makefile stages exactly what the COPY lines take.
	mk := string(read(t, "../Makefile"))
	for _, staged := range []string{"bin/image/hookrelay", "bin/image/relay.yaml", "bin/image/providers.d", "bin/image/spool", "bin/image/ca-certificates.crt", "CGO_ENABLED=0"} {
		if !strings.Contains(mk, staged) {
			t.Errorf("Makefile does not stage %s", staged)
		}
	}
}

// TestContainerConfigLoads: the container's relay.yaml is a configuration the
// relay accepts, given the admin token it requires.
func TestContainerConfigLoads(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("HOOKRELAY_ADMIN_TOKEN", "deploy-test-admin-token-0123456789")
	t.Setenv("HOOKRELAY_SPOOL__PATH", filepath.Join(dir, "hookrelay.db"))
	abs, err := filepath.Abs("../providers.d")
	must(t, err)
	t.Setenv("HOOKRELAY_PROVIDERS_DIR", abs)
	cfg, err := engine.Load("relay.container.yaml", true)
	if err != nil {
		t.Fatalf("relay.container.yaml: %v", err)
	}
	if cfg.Listen != ":8080" {
		t.Errorf("listen %q", cfg.Listen)
	}
}

type instruction struct{ cmd, args string }

// dockerfile reads a Dockerfile's instructions: comments dropped, continued
// lines joined.
func dockerfile(t *testing.T, path string) []instruction {
	t.Helper()
	var ins []instruction
	var cur strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(read(t, path)))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if l, ok := strings.CutSuffix(line, `\`); ok {
			cur.WriteString(l + " ")
			continue
		}
		cur.WriteString(line)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		ins = append(ins, instruction{strings.ToUpper(cmd), strings.TrimSpace(args)})
		cur.Reset()
	}
	return ins
}

// TestKubernetesSidecar: the example Deployment runs the relay beside the
// broker with its spool on a volume, secrets as environment and as files,
// /healthz and /readyz probes on the admin port, a preStop pause, and a grace
// period longer than that pause plus the relay's shutdown_timeout.
func TestKubernetesSidecar(t *testing.T) {
	docs := yamlDocs(t, "kubernetes/broker-with-hookrelay.yaml")
	kinds := map[string]map[string]any{}
	for _, d := range docs {
		kinds[str(d, "kind")] = d
	}
	for _, k := range []string{"ConfigMap", "PersistentVolumeClaim", "Deployment", "Service"} {
		if kinds[k] == nil {
			t.Fatalf("no %s", k)
		}
	}
	var relay struct {
		Admin           struct{ Listen string }
		Spool           struct{ Path string }
		ShutdownTimeout string `yaml:"shutdown_timeout"`
		Dir             string `yaml:"providers_dir"`
	}
	must(t, yaml.Unmarshal([]byte(str(kinds["ConfigMap"], "data", "relay.yaml")), &relay))
	shutdown, err := time.ParseDuration(relay.ShutdownTimeout)
	must(t, err)
	_, adminPort, _ := net.SplitHostPort(relay.Admin.Listen)

	pod := get(kinds["Deployment"], "spec", "template", "spec").(map[string]any)
	var c map[string]any
	var names []string
	for _, x := range get(pod, "containers").([]any) {
		names = append(names, str(x, "name"))
		if str(x, "name") == "hookrelay" {
			c = x.(map[string]any)
		}
	}
	if c == nil || len(names) < 2 {
		t.Fatalf("containers %v: want the relay beside the broker", names)
	}
	ports := map[string]string{}
	for _, p := range get(c, "ports").([]any) {
		ports[str(p, "name")] = fmt.Sprint(get(p, "containerPort"))
	}
	for probe, path := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz"} {
		if got := str(c, probe, "httpGet", "path"); got != path {
			t.Errorf("%s path %q, want %s", probe, got, path)
		}
		port := fmt.Sprint(get(c, probe, "httpGet", "port"))
		if ports[port] != "" {
			port = ports[port]
		}
		if port != adminPort {
			t.Errorf("%s on port %s, the admin listener is %s", probe, port, relay.Admin.Listen)
		}
	}
	volumes := map[string]map[string]any{}
	for _, v := range get(pod, "volumes").([]any) {
		volumes[str(v, "name")] = v.(map[string]any)
	}
	mounts := map[string]string{}
	for _, m := range get(c, "volumeMounts").([]any) {
		mounts[str(m, "mountPath")] = str(m, "name")
		if volumes[str(m, "name")] == nil {
			t.Errorf("volumeMount %s names no volume", str(m, "name"))
		}
	}
	spool := volumes[mounts[filepath.Dir(relay.Spool.Path)]]
	if spool == nil || (spool["persistentVolumeClaim"] == nil && spool["emptyDir"] == nil) {
		t.Errorf("the spool directory %s is not on a PVC or emptyDir volume", filepath.Dir(relay.Spool.Path))
	}
	if mounts[relay.Dir] == "" {
		t.Errorf("providers_dir %s is not mounted", relay.Dir)
	}
	secretFile := false
	for path, name := range mounts {
		if volumes[name]["secret"] != nil && strings.Contains(str(kinds["ConfigMap"], "data", "relay.yaml"), "file:"+path+"/") {
			secretFile = true
		}
	}
	if !secretFile {
		t.Error("no Secret mounted as files and named by a file: reference in relay.yaml")
	}
	if str(get(c, "envFrom").([]any)[0], "secretRef", "name") == "" {
		t.Error("no Secret as environment variables")
	}
	preStop, _ := get(c, "lifecycle", "preStop", "sleep", "seconds").(int)
	if preStop <= 0 {
		t.Error("no preStop sleep")
	}
	grace, _ := get(pod, "terminationGracePeriodSeconds").(int)
	if time.Duration(grace)*time.Second <= shutdown+time.Duration(preStop)*time.Second {
		t.Errorf("terminationGracePeriodSeconds %d: want more than preStop %ds + shutdown_timeout %s", grace, preStop, shutdown)
	}
	if uid, _ := get(c, "securityContext", "runAsUser").(int); uid == 0 {
		t.Error("the relay container runs as root")
	}
	if get(c, "securityContext", "readOnlyRootFilesystem") != true {
		t.Error("the relay container's root filesystem is writable")
	}
}

// TestSystemdUnit: the unit runs `serve` unprivileged with its spool in the
// state directory, hardened, and waits longer than shutdown_timeout's default
// for a drain. `make deploy-check` also runs systemd-analyze verify.
func TestSystemdUnit(t *testing.T) {
	service := map[string][]string{}
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(read(t, "systemd/hookrelay.service")))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "["):
			section = line
		case section == "[Service]":
			k, v, _ := strings.Cut(line, "=")
			service[k] = append(service[k], v)
		}
	}
	for k, v := range map[string]string{"DynamicUser": "yes", "StateDirectory": "hookrelay", "ProtectSystem": "strict",
		"NoNewPrivileges": "yes", "ProtectHome": "yes", "PrivateTmp": "yes", "CapabilityBoundingSet": ""} {
		if got := service[k]; len(got) != 1 || got[0] != v {
			t.Errorf("%s=%v, want %s", k, got, v)
		}
	}
	if env := service["Environment"]; !slices.Contains(env, "HOOKRELAY_SPOOL__PATH=%S/hookrelay/hookrelay.db") {
		t.Errorf("Environment=%v: want the spool in StateDirectory, the only writable place", env)
	}
	if exec := service["ExecStart"]; len(exec) != 1 || !strings.Contains(exec[0], " serve ") {
		t.Errorf("ExecStart=%v", exec)
	}
	stop, err := time.ParseDuration(strings.Join(service["TimeoutStopSec"], ""))
	if err != nil || stop <= 20*time.Second {
		t.Errorf("TimeoutStopSec=%v: want more than the default shutdown_timeout 20s", service["TimeoutStopSec"])
	}
}

// TestVersionFromLdflags: the -X flag `make build` passes reaches `hookrelay
// version` and hookrelay_build_info alike.
func TestVersionFromLdflags(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	mk := string(read(t, "../Makefile"))
	m := regexp.MustCompile(`(?m)^LDFLAGS := (.*\$\(VERSION\).*\$\(REVISION\).*)$`).FindStringSubmatch(mk)
	if m == nil {
		t.Fatal("Makefile sets no LDFLAGS := -X ...=$(VERSION) -X ...=$(REVISION)")
	}
	const version, revision = "v9.8.7-3-gdeadbee-dirty", "deadbee0123456789abcdef0123456789abcdef0"
	ldflags := strings.NewReplacer("$(VERSION)", version, "$(REVISION)", revision).Replace(m[1])
	bin := filepath.Join(t.TempDir(), "hookrelay")
	build := exec.Command(goTool(), "build", "-ldflags", ldflags, "-o", bin, "../cmd/hookrelay")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version").CombinedOutput()
	if want := "hookrelay " + version + " (revision " + revision + ", "; err != nil || !strings.HasPrefix(string(out), want) {
		t.Fatalf("hookrelay version: %q, %v; want it to start with %q", out, err, want)
	}

	// The same binary serving: its /metrics says the same version.
	dir := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(dir, "providers.d"), 0o755))
	ingestPort, adminPort := freePort(t), freePort(t)
	for adminPort == ingestPort {
		adminPort = freePort(t)
	}
	relay := fmt.Sprintf("listen: 127.0.0.1:%d\nadmin: { listen: 127.0.0.1:%d }\nspool: { path: ./spool.db }\nproviders_dir: ./providers.d\n"+
		"destinations:\n  broker: { url: http://127.0.0.1:9/ }\n", ingestPort, adminPort)
	must(t, os.WriteFile(filepath.Join(dir, "relay.yaml"), []byte(relay), 0o644))
	serve := exec.Command(bin, "serve", "--config", filepath.Join(dir, "relay.yaml"))
	serve.Dir = dir
	var logs bytes.Buffer
	serve.Stdout, serve.Stderr = &logs, &logs
	must(t, serve.Start())
	t.Cleanup(func() {
		_ = serve.Process.Kill()
		_ = serve.Wait()
	})
	url := fmt.Sprintf("http://127.0.0.1:%d", adminPort)
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get(url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("relay not ready after 15s: %v\n%s", err, logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	got := map[string]string{}
	for _, m := range scrape(t, url)["hookrelay_build_info"].GetMetric() {
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
	}
	if got["version"] != version || got["revision"] != revision || got["goversion"] == "" {
		t.Errorf("hookrelay_build_info %v, want version %s, revision %s", got, version, revision)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	must(t, ln.Close()) // the port is free only once closed
	return port
}

// goTool is the go command of the toolchain running the tests.
func goTool() string {
	if root := os.Getenv("GOROOT"); root != "" {
		if p := filepath.Join(root, "bin", "go"); fileExists(p) {
			return p
		}
	}
	return "go"
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// yamlDocs parses every document of a YAML file.
func yamlDocs(t *testing.T, path string) []map[string]any {
	t.Helper()
	var docs []map[string]any
	dec := yaml.NewDecoder(bytes.NewReader(read(t, path)))
	for {
		var d map[string]any
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		docs = append(docs, d)
	}
}

// yamlInto decodes the keys v names from path and ignores the rest.
func yamlInto(t *testing.T, path string, v any) {
	t.Helper()
	if err := yaml.Unmarshal(read(t, path), v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// walkJSON calls f for every string value in v with the key that holds it.
func walkJSON(v any, f func(key, value string)) {
	switch v := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if s, ok := v[k].(string); ok {
				f(k, s)
			} else {
				walkJSON(v[k], f)
			}
		}
	case []any:
		for _, x := range v {
			walkJSON(x, f)
		}
	}
}

// get walks maps by key.
func get(v any, path ...string) any {
	for _, k := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func str(v any, path ...string) string {
	s, _ := get(v, path...).(string)
	return s
}

func read(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	must(t, err)
	return b
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
