package gitsource

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckLimits(t *testing.T) {
	file := func(p string, size int64) manifestEntry { return manifestEntry{Path: p, Kind: kindFile, Size: size} }
	many := make([]manifestEntry, MaxReleaseEntries+1)
	for i := range many {
		many[i] = file("f", 1)
	}
	for _, tc := range []struct {
		name    string
		entries []manifestEntry
		rf      readFiles
		want    string // "" = accepted
	}{
		{"small", []manifestEntry{file("compose.yaml", 100), file(".env", 10)}, readFiles{}, ""},
		{"at the limit", []manifestEntry{file("compose.yaml", MaxComposeFileBytes)}, readFiles{}, ""},
		{"default compose over", []manifestEntry{file("docker-compose.yml", MaxComposeFileBytes+1)}, readFiles{}, "docker-compose.yml: compose file of 4194305 bytes"},
		{"unnamed big file is data", []manifestEntry{file("assets/logo.bin", 100<<20)}, readFiles{}, ""},
		{"named compose over", []manifestEntry{file("deploy/a.yaml", MaxComposeFileBytes+1)}, readFiles{compose: []string{"./deploy/a.yaml"}}, "deploy/a.yaml: compose file"},
		{"env_files over", []manifestEntry{file("prod.env", MaxEnvFileBytes+1)}, readFiles{env: []string{"prod.env"}}, "prod.env: env file"},
		{".env.age over", []manifestEntry{file(".env.age", MaxEnvFileBytes+1)}, readFiles{}, ".env.age: env file"},
		{"tree bytes", []manifestEntry{file("a", MaxReleaseBytes), file("b", 1)}, readFiles{}, "release tree has 1073741825 bytes, over lockstep's limit of 1073741824 bytes"},
		{"tree entries", many, readFiles{}, "release tree has 200001 entries"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkLimits(tc.entries, tc.rf)
			var le *LimitError
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (!errors.As(err, &le) || !strings.Contains(err.Error(), tc.want) || !le.Permanent()):
				t.Fatalf("checkLimits = %v, want a permanent *LimitError containing %q", err, tc.want)
			}
		})
	}
}
