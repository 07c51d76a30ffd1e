package config

import (
	"errors"
	"strings"
	"testing"
)

func forgeDoc(repoURL, forge string) string {
	kh := ""
	if !strings.HasPrefix(repoURL, "http") && !strings.HasPrefix(repoURL, "/") {
		kh = "\nknown_hosts = \"/kh\""
	}
	return "[repo]\nurl = \"" + repoURL + "\"" + kh + "\n\n[forge]\n" + forge + "\n[[environment]]\nname = \"production\"\n"
}

// TestForgeGuesses: kind, API base and repository come from [repo].url
// when the host says which forge it is.
func TestForgeGuesses(t *testing.T) {
	tests := []struct {
		name, url, forge string
		want             Forge
	}{
		{"github https", "https://github.com/acme/infra.git", `token_file = "/t"`,
			Forge{Kind: "github", APIURL: "https://api.github.com", Repository: "acme/infra", Deployments: true}},
		{"github scp-like", "git@github.com:acme/infra.git", `token_file = "/t"`,
			Forge{Kind: "github", APIURL: "https://api.github.com", Repository: "acme/infra", Deployments: true}},
		{"github no deployments", "ssh://git@GitHub.com/acme/infra", "token_file = \"/t\"\ndeployments = false",
			Forge{Kind: "github", APIURL: "https://api.github.com", Repository: "acme/infra"}},
		{"gitlab subgroups", "https://gitlab.com/acme/platform/infra.git", `token_file = "/t"`,
			Forge{Kind: "gitlab", APIURL: "https://gitlab.com/api/v4", Repository: "acme/platform/infra"}},
		{"self-hosted gitlab", "https://git.example.com/acme/infra.git", "kind = \"gitlab\"\ntoken_file = \"/t\"",
			Forge{Kind: "gitlab", APIURL: "https://git.example.com/api/v4", Repository: "acme/infra"}},
		{"gitea with port", "http://127.0.0.1:3000/me/app.git", "kind = \"gitea\"\ntoken_file = \"/t\"",
			Forge{Kind: "gitea", APIURL: "http://127.0.0.1:3000/api/v1", Repository: "me/app"}},
		{"forgejo ssh, api given", "ssh://git@code.example.org:2222/me/app.git", "kind = \"forgejo\"\ntoken_file = \"/t\"\napi_url = \"https://code.example.org/api/v1/\"",
			Forge{Kind: "forgejo", APIURL: "https://code.example.org/api/v1", Repository: "me/app"}},
		{"repository given", "/srv/git/infra", "kind = \"gitea\"\ntoken_file = \"/t\"\napi_url = \"https://g.example/api/v1\"\nrepository = \"ops/infra\"",
			Forge{Kind: "gitea", APIURL: "https://g.example/api/v1", Repository: "ops/infra"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse("l.toml", []byte(forgeDoc(tt.url, tt.forge)))
			if err != nil {
				t.Fatal(err)
			}
			tt.want.TokenFile, tt.want.Context = "/t", DefaultForgeContext
			if cfg.Forge != tt.want {
				t.Errorf("forge:\n got %+v\nwant %+v", cfg.Forge, tt.want)
			}
			if !cfg.Forge.Enabled() {
				t.Error("not enabled")
			}
		})
	}
}

func TestForgeAbsentIsOff(t *testing.T) {
	cfg, err := Parse("l.toml", []byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Forge.Enabled() || cfg.Forge != (Forge{}) {
		t.Errorf("forge without a [forge] table: %+v", cfg.Forge)
	}
}

// TestForgeProblems: each mistake is reported with its key and line.
func TestForgeProblems(t *testing.T) {
	tests := []struct {
		name, url, forge string
		key, msg         string
	}{
		{"no token", "https://github.com/a/b.git", `repository = "a/b"`, "[forge].token_file", "required in [forge]"},
		{"relative token", "https://github.com/a/b.git", `token_file = "t"`, "[forge].token_file", "absolute path"},
		{"inline token", "https://github.com/a/b.git", `token = "ghp_x"`, "[forge].token", "use `token_file`"},
		{"unknown host", "https://git.example.com/a/b.git", `token_file = "/t"`, "[forge].kind", `cannot be told from its host "git.example.com"`},
		{"bad kind", "https://github.com/a/b.git", "kind = \"bitbucket\"\ntoken_file = \"/t\"", "[forge].kind", "must be github, gitlab, gitea or forgejo"},
		{"gitea over ssh", "git@git.example.com:a/b.git", "kind = \"gitea\"\ntoken_file = \"/t\"", "[forge].api_url", "cannot be derived"},
		{"api with credentials", "https://github.com/a/b.git", "token_file = \"/t\"\napi_url = \"https://x:y@api.github.com\"", "[forge].api_url", "must not hold credentials"},
		{"api not http", "https://github.com/a/b.git", "token_file = \"/t\"\napi_url = \"ftp://api\"", "[forge].api_url", "http:// or https://"},
		{"github nested", "https://github.com/a/b/c.git", `token_file = "/t"`, "[forge].repository", "must be owner/name on github"},
		{"no repository", "/srv/git/x", "kind = \"gitea\"\ntoken_file = \"/t\"\napi_url = \"https://g/api/v1\"", "[forge].repository", "cannot be derived"},
		{"context without env", "https://github.com/a/b.git", "token_file = \"/t\"\ncontext = \"lockstep@{host}\"", "[forge].context", "must contain {environment}"},
		{"context placeholder", "https://github.com/a/b.git", "token_file = \"/t\"\ncontext = \"{env}/{environment}\"", "[forge].context", "unknown placeholder {env}"},
		{"deployments off github", "https://gitlab.com/a/b.git", "token_file = \"/t\"\ndeployments = true", "[forge].deployments", "only GitHub"},
		{"deployments type", "https://github.com/a/b.git", "token_file = \"/t\"\ndeployments = \"yes\"", "[forge].deployments", "must be true or false"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("l.toml", []byte(forgeDoc(tt.url, tt.forge)))
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("accepted (%v)", err)
			}
			for _, p := range ce.Problems {
				if p.Key == tt.key && strings.Contains(p.Msg, tt.msg) {
					if p.Line < 4 {
						t.Errorf("problem %q on line %d, want the [forge] table's", p.Msg, p.Line)
					}
					if strings.Contains(p.Msg, "ghp_x") {
						t.Errorf("token echoed: %s", p.Msg)
					}
					return
				}
			}
			t.Errorf("no %s problem containing %q in:\n%v", tt.key, tt.msg, err)
		})
	}
}
