package cli

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/lockstep-gitops/lockstep/api"
	"github.com/lockstep-gitops/lockstep/gitsource"
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

// TestStatusShowsStateDirSize: status prints the agent's measure of its
// state dir under the table, and --json has it as state_dir.
func TestStatusShowsStateDirSize(t *testing.T) {
	srv := api.NewServer(&remoteAgent{}, nil, zerolog.Nop())
	srv.DiskUsage = func(context.Context) (gitsource.DiskUsage, error) {
		return gitsource.DiskUsage{GitBytes: 131 << 20, ReleasesBytes: 281 << 20, Releases: 4, OtherBytes: 120 << 10}, nil
	}
	cfg := serveRemoteWith(t, srv)
	got := run(t, nil, nil, "--config", cfg, "status")
	if want := "state dir: 412.1 MiB on disk (git cache 131.0 MiB, 4 releases 281.0 MiB, other 120.0 KiB)\n"; got.code != exitOK || !strings.Contains(got.stdout, want) {
		t.Errorf("status: exit %d\n%s%s\nwant a line %q", got.code, got.stdout, got.stderr, want)
	}
	got = run(t, nil, nil, "--config", cfg, "status", "--json")
	var resp api.StatusResponse
	if err := json.Unmarshal([]byte(got.stdout), &resp); err != nil || resp.StateDir == nil || resp.StateDir.Releases != 4 {
		t.Errorf("status --json: %v %+v\n%s", err, resp.StateDir, got.stdout)
	}
}
