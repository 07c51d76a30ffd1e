package gitsource

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing/transport"
)

func TestRedactURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"https://github.com/acme/infra.git", "https://github.com/acme/infra.git"},
		{"https://user:tok3n@github.com/acme/infra.git", "https://user@github.com/acme/infra.git"},
		{"https://:tok3n@github.com/acme/infra.git", "https://github.com/acme/infra.git"},
		// A user name alone may be a pasted token, except over ssh.
		{"https://ghp_t0ken@github.com/acme/infra.git", "https://REDACTED@github.com/acme/infra.git"},
		{"tcp://admin@h:2376", "tcp://REDACTED@h:2376"},
		{"ssh://deploy@github.com/acme/infra.git", "ssh://deploy@github.com/acme/infra.git"},
		{"git+ssh://deploy@github.com/acme/infra.git", "git+ssh://deploy@github.com/acme/infra.git"},
		// What compose/engine and config showed before they used RedactURL.
		{"tcp://admin:hunter2@h:2376", "tcp://admin@h:2376"},
		{"https://user:token@example.com/repo.git#main:compose.yaml", "https://user@example.com/repo.git#main:compose.yaml"},
		// Without a scheme: a URL with one missing, an scp-like address.
		{"//me:tok3n@git.example.com/x.git", "//me@git.example.com/x.git"},
		{"me:tok3n@git.example.com/x.git", "me@git.example.com/x.git"},
		{"me:tok3n@git.example.com:x.git", "me@git.example.com:x.git"},
		{"http://bot:p%40ss@127.0.0.1:8080/infra.git?x=1", "http://bot@127.0.0.1:8080/infra.git?x=1"},
		{"ssh://git@github.com:22/acme/infra.git", "ssh://git@github.com:22/acme/infra.git"},
		{"ssh://git:pw@github.com/acme/infra.git", "ssh://git@github.com/acme/infra.git"},
		{"git@github.com:acme/infra.git", "git@github.com:acme/infra.git"},
		{"/srv/git/infra.git", "/srv/git/infra.git"},
		{"file:///srv/git/infra.git", "file:///srv/git/infra.git"},
		{"", ""},
		// Unparseable as a URL (bad escape), still scrubbed.
		{"https://user:tok%zz@host/repo", "https://user@host/repo"},
		{"https://:tok%zz@host/repo", "https://host/repo"},
		{"https://ghp_t0ken@host/repo%zz", "https://REDACTED@host/repo%zz"},
		{"ssh://git@host/repo%zz", "ssh://git@host/repo%zz"},
	}
	for _, tt := range tests {
		if got := RedactURL(tt.in); got != tt.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestScrubberHidesSecretsButKeepsErrorsIs(t *testing.T) {
	sc := scrubber{url: "https://bot:hunter22@host/repo.git", secrets: []string{"ghs_token123"}}
	inner := fmt.Errorf("get https://bot:hunter22@host/repo.git with ghs_token123 and https://a:b@c/d: %w", transport.ErrAuthenticationRequired)
	err := sc.err(inner)
	for _, secret := range []string{"hunter22", "ghs_token123", "a:b@"} {
		if strings.Contains(err.Error(), secret) {
			t.Errorf("scrubbed error %q still contains %q", err, secret)
		}
	}
	if !strings.Contains(err.Error(), "https://bot@host/repo.git") {
		t.Errorf("scrubbed error %q lost the redacted URL", err)
	}
	if !errors.Is(err, transport.ErrAuthenticationRequired) {
		t.Errorf("errors.Is lost the cause")
	}
	if errors.Unwrap(err) != nil {
		t.Errorf("the unscrubbed error is reachable through Unwrap")
	}
	plain := errors.New("nothing secret")
	if sc.err(plain) != plain {
		t.Errorf("an error without secrets should pass through unchanged")
	}
}
