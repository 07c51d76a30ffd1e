package compose_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/lockstep-gitops/lockstep/compose"
)

// fuzzTree is the rest of the repository every fuzzed compose.yaml is
// loaded beside, so that bind mounts, env_file, configs and secrets can
// resolve to real files and their digests are exercised, not only their
// "does not exist" errors. The names match testdata/kitchen, whose
// compose.yaml is a seed.
var fuzzTree = map[string]string{
	"nginx/nginx.conf":         "events {}\nhttp {}\n",
	"site/index.html":          "<h1>hi</h1>\n",
	"web.env":                  "FROM_FILE=1\nOTHER=two\n",
	"config.toml":              "answer = 42\n",
	"secrets/db_password.txt":  "not-a-real-secret\n",
	"deploy/compose.extra.yml": "services:\n  extra:\n    image: busybox\n",
}

// FuzzLoad loads an arbitrary compose.yaml as the only compose file of a
// release. The compose file comes from whoever can merge to the branch, so
// Load must never panic on it; every refusal must be a *compose.LoadError
// (or wrap one), which the agent classifies as permanent and shows with
// file, line and key; and an accepted project must hash the same way on
// every load: twice in the same release directory it is deeply equal, and
// loaded from a second release directory holding the same tree (a new
// commit that changed nothing) every service keeps its Hash, SpecHash and
// file digests (Compose's ConfigHash holds absolute paths and moves). A hash that moved there would recreate every container on
// every deploy.
//
// Seeds: testdata/kitchen/compose.yaml (every key lockstep converts), the
// f.Add documents below and testdata/fuzz/FuzzLoad.
func FuzzLoad(f *testing.F) {
	kitchen, err := os.ReadFile(filepath.Join("testdata", "kitchen", "compose.yaml"))
	if err != nil {
		f.Fatalf("read the kitchen compose file as a seed: %v", err)
	}
	f.Add(string(kitchen))
	f.Add("services:\n  web:\n    image: 127.0.0.1:5000/web:${LOCKSTEP_COMMIT_SHORT}\n    ports: [\"8080:80\"]\n")
	f.Add("services:\n  nginx:\n    image: nginx\n    volumes:\n      - ./nginx/nginx.conf:/etc/nginx/nginx.conf:ro\n      - ./site:/srv\n" +
		"    env_file: web.env\n    configs: [app]\n    secrets: [db]\n    depends_on:\n      app: {condition: service_healthy, restart: true}\n" +
		"  app:\n    image: app:1\n    healthcheck: {test: [\"CMD\", \"true\"]}\n    deploy: {update_config: {order: start-first}}\n" +
		"configs:\n  app: {file: ./config.toml}\nsecrets:\n  db: {file: ./secrets/db_password.txt}\n")
	f.Add("include:\n  - deploy/compose.extra.yml\nservices:\n  a:\n    image: a\n    depends_on: [b]\n  b:\n    image: b\n    depends_on: [a]\n")
	f.Add("services:\n  a:\n    image: ${UNSET}\n    volumes: [\"../outside:/x\"]\n")
	f.Add("services:\n  a:\n    image: a\n    network_mode: service:b\n    expose: [\"0\"]\nnetworks:\n  n:\n    ipam: {config: [{subnet: nope}]}\n")
	f.Add("services: [\n")

	f.Fuzz(func(t *testing.T, composeYAML string) {
		first := fuzzRelease(t, composeYAML)
		p1, err := fuzzLoadOnce(t, first)
		if err != nil {
			var le *compose.LoadError
			if !errors.As(err, &le) {
				t.Fatalf("Load error %T is not a *compose.LoadError: %v", err, err)
			}
			if le.Msg == "" {
				t.Fatalf("LoadError without a message: %#v", le)
			}
			return
		}

		p2, err := fuzzLoadOnce(t, first)
		if err != nil {
			t.Fatalf("second load of an accepted release failed: %v", err)
		}
		if !reflect.DeepEqual(p1, p2) {
			t.Fatalf("two loads of the same release differ")
		}

		second := fuzzRelease(t, composeYAML)
		p3, err := fuzzLoadOnce(t, second)
		if err != nil {
			t.Fatalf("the same tree in another release dir failed to load: %v", err)
		}
		if len(p1.Services) != len(p3.Services) {
			t.Fatalf("%d services, then %d from another release dir", len(p1.Services), len(p3.Services))
		}
		for i := range p1.Services {
			a, b := &p1.Services[i], &p3.Services[i]
			if a.Name != b.Name {
				t.Fatalf("service order differs: %q vs %q", a.Name, b.Name)
			}
			if a.Hash == "" || a.SpecHash == "" || a.ConfigHash == "" {
				t.Fatalf("service %q has an empty hash", a.Name)
			}
			// ConfigHash (Compose's) holds absolute paths: not compared.
			if a.SpecHash != b.SpecHash || a.Hash != b.Hash || !reflect.DeepEqual(a.Files, b.Files) {
				t.Fatalf("service %q hashes differently from another release dir with the same content:\n"+
					"spec %s vs %s\nhash %s vs %s\nfiles %v vs %v", a.Name, a.SpecHash, b.SpecHash, a.Hash, b.Hash, a.Files, b.Files)
			}
		}
		for i := range p1.Networks {
			if p1.Networks[i].Hash != p3.Networks[i].Hash {
				t.Fatalf("network %q hashes differently from another release dir", p1.Networks[i].Key)
			}
		}
	})
}

// fuzzRelease writes fuzzTree and composeYAML as compose.yaml into a new
// release directory.
func fuzzRelease(t *testing.T, composeYAML string) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{"compose.yaml": composeYAML}
	for name, content := range fuzzTree {
		files[name] = content
	}
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// fuzzLoadOnce loads the release with fixed options. The deadline is far
// above what any load takes: hitting it means the input made Load spin,
// which the harness reports as a failure (the error is not a LoadError).
func fuzzLoadOnce(t *testing.T, dir string) (*compose.Project, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return compose.Load(ctx, compose.LoadOptions{
		ReleaseDir:  dir,
		Project:     "fuzz",
		Environment: "production",
		Commit:      "9fceb02d0ae598e95dc970b74767f19372d61af8",
		PinVars:     map[string]string{"PIN_VAR": "from-pin"},
		Version:     "0.0.0-fuzz",
	})
}
