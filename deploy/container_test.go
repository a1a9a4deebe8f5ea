package deploy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/hookrelay/hookrelay/engine"
)

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
