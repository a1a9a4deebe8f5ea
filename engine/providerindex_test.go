package engine

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestProvidersIndexedByName: a loaded configuration indexes its providers
// by name, so the ingest's poller tracking (trackPollKey, once per accepted
// event) finds one by a map lookup, not a scan; every provider is found, a
// name not configured is not, and a reload builds the index of the new set.
func TestProvidersIndexedByName(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{}
	for _, name := range []string{"a", "b", "c"} {
		files[name] = strings.Replace(plainProvider, "/in/plain", "/in/"+name, 1)
	}
	writeConfig(t, dir, relayYAML("http://127.0.0.1:1/x", ""), files)
	cfg, err := Load(filepath.Join(dir, "relay.yaml"), true)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.providers) != len(cfg.Providers) || len(cfg.Providers) != 3 {
		t.Fatalf("index of %d providers for %d loaded, want 3 each", len(cfg.providers), len(cfg.Providers))
	}
	for _, p := range cfg.Providers {
		if cfg.providers[p.Name] != p || cfg.Provider(p.Name) != p {
			t.Errorf("provider %s not indexed under its name", p.Name)
		}
	}
	if cfg.Provider("nope") != nil {
		t.Error("a provider not configured was found")
	}

	tr := startRelay(t, relayYAML("http://127.0.0.1:1/x", ""), map[string]string{"plain": plainProvider})
	tr.writeProvider("second", strings.Replace(plainProvider, "/in/plain", "/in/second", 1))
	if err := tr.Reload(); err != nil {
		t.Fatal(err)
	}
	if c := tr.Config(); c.Provider("second") == nil || c.Provider("plain") == nil || len(c.providers) != 2 {
		t.Errorf("after a reload the index holds %d providers, want plain and second", len(c.providers))
	}
}
