package compose

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files")

// TestKitchenSinkGolden converts a project using every supported key and
// compares the whole model with testdata/kitchen.golden.json. Review the
// diff of the golden file whenever it changes: it is the spec of what each
// compose key becomes in the Engine API.
func TestKitchenSinkGolden(t *testing.T) {
	dir := copyRelease(t, "testdata/kitchen")
	opts := testOptions(dir)
	opts.PinVars = map[string]string{"PIN_VAR": "from-pin"}
	p := load(t, opts)
	// Compose's config-hash covers the absolute release dir, a new temp
	// dir every run: TestComposeConfigHashOracle checks its value.
	for i := range p.Services {
		s := &p.Services[i]
		if s.ConfigHash == "" || s.Config.Labels[LabelConfigHash] != s.ConfigHash {
			t.Fatalf("service %s: config-hash label %q, ConfigHash %q", s.Name, s.Config.Labels[LabelConfigHash], s.ConfigHash)
		}
		s.ConfigHash = "$COMPOSE_CONFIG_HASH"
		s.Config.Labels[LabelConfigHash] = s.ConfigHash
	}

	got, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = bytes.ReplaceAll(got, []byte(dir), []byte("$RELEASE"))
	got = append(got, '\n')

	golden := filepath.Join("testdata", "kitchen.golden.json")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test ./compose -run Golden -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("converted project differs from %s; run with -update and review the diff.\n%s", golden, firstDiff(string(want), string(got)))
	}
}

func firstDiff(want, got string) string {
	wl, gl := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < len(wl) || i < len(gl); i++ {
		var w, g string
		if i < len(wl) {
			w = wl[i]
		}
		if i < len(gl) {
			g = gl[i]
		}
		if w != g {
			return "line " + itoa(i+1) + ":\n  want: " + w + "\n  got:  " + g
		}
	}
	return ""
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

// The gate's opt-out label is the one lockstep label a compose file may
// set; every other lockstep.* and com.docker.compose.* label is refused.
func TestHealthGateLabelAllowed(t *testing.T) {
	dir := writeRelease(t, map[string]string{"compose.yaml": "services:\n  web:\n    image: nginx\n    labels:\n      lockstep.health-gate: \"false\"\n"})
	p := load(t, testOptions(dir))
	if got := p.Service("web").Config.Labels["lockstep.health-gate"]; got != "false" {
		t.Errorf("lockstep.health-gate = %q, want the compose file's false", got)
	}
	dir = writeRelease(t, map[string]string{"compose.yaml": "services:\n  web:\n    image: nginx\n    labels:\n      lockstep.hash: x\n"})
	assertContains(t, loadErr(t, testOptions(dir)).Error(), `label "lockstep.hash" is reserved`)
}
