package gitsource_test

import (
	"strings"
	"testing"

	"github.com/lockstep-gitops/lockstep/gitsource"
)

func TestParseURL(t *testing.T) {
	tests := []struct {
		url  string
		want gitsource.Transport
		err  string
	}{
		{"https://git.example.com/acme/infra.git", gitsource.TransportHTTP, ""},
		{"http://127.0.0.1:8080/infra.git", gitsource.TransportHTTP, ""},
		{"https://oauth2@git.example.com/x.git", gitsource.TransportHTTP, ""},
		{"ssh://git@git.example.com:22/acme/infra.git", gitsource.TransportSSH, ""},
		{"git@github.com:acme/infra.git", gitsource.TransportSSH, ""},
		{"/srv/git/infra.git", gitsource.TransportLocal, ""},
		{"file:///srv/git/infra.git", gitsource.TransportLocal, ""},
		{"file://localhost/srv/git/infra.git", gitsource.TransportLocal, ""},
		{"git://h/x", gitsource.TransportInvalid, `scheme "git" is not supported`},
		{"just-words", gitsource.TransportInvalid, `"just-words" is not a repository URL`},
		{"./repo", gitsource.TransportInvalid, "is not a repository URL"},
		{"https:///x", gitsource.TransportInvalid, "has no host"},
		{"https://me:hunter22@h/x", gitsource.TransportInvalid, `"https://me@h/x" holds a password`},
		{"https://ghp_hunter22@h/x%zz", gitsource.TransportInvalid, "is not a valid URL"},
		{"file://h/x", gitsource.TransportInvalid, "must name a local path"},
		{"file://localhost", gitsource.TransportInvalid, "must name an absolute path"},
		{"//me:hunter22@h/x", gitsource.TransportInvalid, "starts with //"},
	}
	for _, tt := range tests {
		got, err := gitsource.ParseURL(tt.url)
		if got != tt.want {
			t.Errorf("ParseURL(%q) = %s, want %s", tt.url, got, tt.want)
		}
		switch {
		case tt.err == "" && err != nil:
			t.Errorf("ParseURL(%q): %v", tt.url, err)
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("ParseURL(%q) error = %v, want it to contain %q", tt.url, err, tt.err)
		case err != nil && strings.Contains(err.Error(), "hunter22"):
			t.Errorf("ParseURL(%q) error shows the secret: %v", tt.url, err)
		}
	}
}

// TestNewAcceptsWhatParseURLAccepts: go-git would take a relative path
// (or git://) that config refuses; New refuses it too.
func TestNewAcceptsWhatParseURLAccepts(t *testing.T) {
	for _, u := range []string{"relative/repo", "git://h/x"} {
		if _, err := gitsource.New(gitsource.Options{URL: u, StateDir: t.TempDir()}); err == nil || !strings.HasPrefix(err.Error(), "repo URL: ") {
			t.Errorf("New(%q) = %v, want the repo URL refused", u, err)
		}
	}
}
