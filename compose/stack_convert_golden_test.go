package compose

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// TestStackGolden converts testdata/stack as a swarm stack and compares
// the whole model with testdata/stack.golden.json: review its diff
// whenever it changes, it is the spec of what each key becomes in a swarm.
func TestStackGolden(t *testing.T) {
	dir := copyRelease(t, "testdata/stack")
	opts := testOptions(dir)
	opts.Swarm = true
	opts.HostFileRoots = []string{"/var/log"}
	p := load(t, opts)
	got, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = bytes.ReplaceAll(got, []byte(dir), []byte("$RELEASE"))
	got = append(got, '\n')
	golden := filepath.Join("testdata", "stack.golden.json")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test ./compose -run StackGolden -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("converted stack differs from %s; run with -update and review the diff.\n%s", golden, firstDiff(string(want), string(got)))
	}
	if v := CheckPolicy(p, Policy{AllowedBindRoots: []string{"/var/log"}, AllowCapabilities: []string{"CHOWN", "SETUID", "SETGID", "DAC_OVERRIDE", "FOWNER"}}); len(v) != 0 {
		t.Errorf("policy violations: %v", v)
	}
}
