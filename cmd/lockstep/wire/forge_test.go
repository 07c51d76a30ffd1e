package wire

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/lockstep-gitops/lockstep/config"
	"github.com/lockstep-gitops/lockstep/notify/forge"
)

func TestNewForge(t *testing.T) {
	parse := func(t *testing.T, forgeTable string) *config.Config {
		t.Helper()
		doc := "[repo]\nurl = \"https://github.com/acme/infra.git\"\n" + forgeTable + "\n[[environment]]\nname = \"production\"\n"
		cfg, err := config.Parse("l.toml", []byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	if r, err := NewForge(parse(t, ""), zerolog.Nop(), nil, forge.Options{}); r != nil || err != nil {
		t.Fatalf("no [forge]: %v, %v", r, err)
	}

	missing := filepath.Join(t.TempDir(), "forge-token")
	cfg := parse(t, "[forge]\ntoken_file = \""+missing+"\"\n")
	if _, err := NewForge(cfg, zerolog.Nop(), nil, forge.Options{}); err == nil ||
		!strings.HasPrefix(err.Error(), "[forge].token_file: cannot read "+missing) {
		t.Fatalf("missing token file: %v", err)
	}

	if err := os.WriteFile(missing, []byte("ghp_x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := NewForge(cfg, zerolog.Nop(), nil, forge.Options{})
	if err != nil || r == nil {
		t.Fatalf("with a token: %v, %v", r, err)
	}
	if h, _ := os.Hostname(); r.Host() != h {
		t.Errorf("host %q, want this machine's %q", r.Host(), h)
	}
}
