package cli

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestValidateShowsStateDirSize: validate ends with what the state dir
// takes on disk, split as DiskUsage measures it; --json leaves it out.
func TestValidateShowsStateDirSize(t *testing.T) {
	state := t.TempDir()
	if err := os.MkdirAll(filepath.Join(state, "git"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(state, "git", "pack"), []byte(strings.Repeat("x", 8192)), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := writeConfig(t, "state_dir = "+`"`+state+`"`+"\n"+testConfig)
	got := run(t, upToDate(), nil, "validate", "--config", cfg, "staging")
	if got.code != exitOK {
		t.Fatalf("exit %d: %s", got.code, got.stderr)
	}
	size := `[0-9.]+ (B|KiB)`
	want := regexp.MustCompile(`(?m)^state dir ` + regexp.QuoteMeta(state) + `: ` + size + ` on disk \(git cache ` + size + `, 0 releases ` + size + `, other ` + size + `\)$`)
	if !want.MatchString(got.stdout) {
		t.Errorf("stdout %q lacks the state dir's size", got.stdout)
	}
	got = run(t, upToDate(), nil, "validate", "--json", "--config", cfg, "staging")
	if strings.Contains(got.stdout, "state dir") {
		t.Errorf("--json output has the text line: %q", got.stdout)
	}
}

func TestSizeText(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 275 << 20: "275.0 MiB", 14 << 29: "7.0 GiB"} {
		if got := sizeText(n); got != want {
			t.Errorf("sizeText(%d) = %q, want %q", n, got, want)
		}
	}
}
