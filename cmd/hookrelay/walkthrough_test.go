package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startSink runs `hookrelay sink` as a child process answering status on
// port, its output in a file the test reads; it is ended by its PID.
func startSink(t *testing.T, port, status int) (stop func(), output func() string) {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "sink.out"))
	must(t, err)
	cmd := exec.Command(binPath, "sink", "--listen", fmt.Sprintf("127.0.0.1:%d", port), "--status", fmt.Sprint(status))
	cmd.Stdout, cmd.Stderr, cmd.Env = f, f, childEnv()
	must(t, cmd.Start())
	output = func() string { b, _ := os.ReadFile(f.Name()); return string(b) }
	waitFor(t, "the sink to listen", func() bool { return strings.Contains(output(), "sink: listening") })
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("sink on SIGTERM: %v", err)
			}
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			t.Errorf("sink did not stop on SIGTERM")
		}
		_ = f.Close() // the sink wrote its output through its own descriptor
	}
	t.Cleanup(stop)
	return stop, output
}

// TestFirstRunWalkthrough is the README's first run, with hookrelay commands
// only: the relay on built-in defaults and the shipped providers.d, `sink`
// playing the broker and refusing (400), `send` playing the lender, the event
// seen dead with `events list` and `events show`, the broker fixed, `events
// retry`, and the event delivered with attempt 1 again.
func TestFirstRunWalkthrough(t *testing.T) {
	repo, err := filepath.Abs("../..")
	must(t, err)
	sub := t.TempDir()
	copyDir(t, filepath.Join(repo, "providers.d"), filepath.Join(sub, "providers.d"))
	in, adm := freePorts(t)
	broker := freePort(t)
	stopRefusing, refused := startSink(t, broker, 400)

	relayEnv := append(childEnv("EXAMPLE_WEBHOOK_SECRET=dev-only-example-secret"),
		fmt.Sprintf("HOOKRELAY_LISTEN=127.0.0.1:%d", in), fmt.Sprintf("HOOKRELAY_ADMIN__LISTEN=127.0.0.1:%d", adm),
		fmt.Sprintf("HOOKRELAY_DESTINATIONS__BROKER__URL=http://127.0.0.1:%d/lender-events", broker))
	r := logTo(t, &relayProc{
		dir: sub, timeout: 20 * time.Second, args: []string{"serve"}, env: relayEnv,
		ingest: fmt.Sprintf("http://127.0.0.1:%d", in), admin: fmt.Sprintf("http://127.0.0.1:%d", adm),
	}, filepath.Join(t.TempDir(), "relay.log"))
	must(t, r.start())

	cli := func(args ...string) string {
		t.Helper()
		code, out, errOut := runBin(t, sub, append(relayEnv, "HOOKRELAY_ADMIN_URL="+r.admin), args...)
		if code != 0 {
			t.Fatalf("hookrelay %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
		}
		return out
	}
	must(t, os.WriteFile(filepath.Join(sub, "order.json"), []byte(`{"id":"evt-1","key":"order-42","type":"order.paid","data":{"amount":100}}`), 0o644))
	if out := cli("send", "example", "order.json", "--url", r.ingest); !strings.Contains(out, "200") {
		t.Fatalf("send: %s", out)
	}

	type list struct {
		Items []struct {
			ID     string `json:"id"`
			Status string `json:"status"`
		} `json:"items"`
	}
	var dead list
	waitFor(t, "the refused event to be dead", func() bool {
		dead = list{}
		return json.Unmarshal([]byte(cli("events", "list", "--status", "dead", "--json")), &dead) == nil && len(dead.Items) == 1
	})
	id := dead.Items[0].ID
	if out := cli("events", "show", id); !strings.Contains(out, "400") {
		t.Errorf("events show of the dead event does not show the broker's 400:\n%s", out)
	}
	if !strings.Contains(refused(), "X-Hookrelay-Event-Id: "+id) {
		t.Errorf("the sink did not print the delivery:\n%s", refused())
	}

	stopRefusing()
	_, accepted := startSink(t, broker, 200)
	if out := cli("events", "retry", id); !strings.Contains(out, "1") {
		t.Fatalf("events retry: %s", out)
	}
	waitFor(t, "the retried event to be delivered", func() bool {
		var ev struct {
			Event struct {
				Status string `json:"status"`
			} `json:"event"`
		}
		return json.Unmarshal([]byte(cli("events", "show", id, "--json")), &ev) == nil && ev.Event.Status == "delivered"
	})
	if out := accepted(); !strings.Contains(out, "X-Hookrelay-Event-Id: "+id) || !strings.Contains(out, "X-Hookrelay-Attempt: 1") {
		t.Errorf("the fixed broker's sink did not get the event as attempt 1:\n%s", out)
	}
	if out := cli("status"); !strings.Contains(out, "broker") {
		t.Errorf("status does not show the broker destination:\n%s", out)
	}
}
