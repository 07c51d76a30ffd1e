package compose

import (
	"strings"
	"testing"

	"github.com/lockstep-gitops/lockstep/gitsource"
)

// TestLoadRefusesFilesOverTheLimits: the compose and env files the loader
// finds by itself (an include, an extends file, a service's env_file, a
// pin env file) are refused over their limits before they are read,
// naming the file and the limit.
func TestLoadRefusesFilesOverTheLimits(t *testing.T) {
	big := strings.Repeat("# padding\n", gitsource.MaxComposeFileBytes/10+1)
	bigEnv := strings.Repeat("A=1\n", gitsource.MaxEnvFileBytes/4+1)
	svc := "services:\n  web:\n    image: nginx:1\n"
	for _, tc := range []struct {
		name  string
		files map[string]string
		env   []string
		file  string
		key   string
	}{
		{"include", map[string]string{"compose.yaml": "include: [big.yaml]\n" + svc, "big.yaml": big}, nil, "big.yaml", ""},
		{"extends", map[string]string{"compose.yaml": "services:\n  web:\n    extends: {file: base.yaml, service: web}\n", "base.yaml": big}, nil, "base.yaml", ""},
		{"env_file", map[string]string{"compose.yaml": svc + "    env_file: [web.env]\n", "web.env": bigEnv}, nil, "web.env", "env_file"},
		{"pin env_files", map[string]string{"compose.yaml": svc, "prod.env": bigEnv}, []string{"prod.env"}, "prod.env", "env_files"},
		{".env", map[string]string{"compose.yaml": svc, ".env": bigEnv}, nil, ".env", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := testOptions(writeRelease(t, tc.files))
			opts.RepoEnvFiles = tc.env
			le := loadErr(t, opts)
			if le.File != tc.file || le.Key != tc.key {
				t.Errorf("error names %s key %q, want %s key %q: %v", le.File, le.Key, tc.file, tc.key, le)
			}
			assertContains(t, le.Error(), "over lockstep's limit of 4194304 bytes")
		})
	}
}
