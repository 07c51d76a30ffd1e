package webhook_test

import (
	"bytes"
	"encoding/hex"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/lockstep-gitops/lockstep/webhook"
)

func TestParsePush(t *testing.T) {
	cases := []struct {
		name    string
		p       webhook.Provider
		h       http.Header
		body    string
		want    webhook.Event
		wantErr bool
	}{
		{"github push", webhook.GitHub, http.Header{"X-Github-Event": {"push"}}, `{"ref":"refs/heads/release/2.0"}`,
			webhook.Event{Kind: webhook.KindPush, Name: "push", Branches: []string{"release/2.0"}}, false},
		{"github tag push", webhook.GitHub, http.Header{"X-Github-Event": {"push"}}, `{"ref":"refs/tags/v1"}`,
			webhook.Event{Kind: webhook.KindPush, Name: "push"}, false},
		{"github ping ignores the body", webhook.GitHub, http.Header{"X-Github-Event": {"ping"}}, `not json`,
			webhook.Event{Kind: webhook.KindPing, Name: "ping"}, false},
		{"github no event header", webhook.GitHub, http.Header{}, `{"ref":"refs/heads/main"}`, webhook.Event{}, true},
		{"github push without ref", webhook.GitHub, http.Header{"X-Github-Event": {"push"}}, `{"after":"abc"}`, webhook.Event{}, true},
		{"github push with a non-string ref", webhook.GitHub, http.Header{"X-Github-Event": {"push"}}, `{"ref":1}`, webhook.Event{}, true},
		{"github form without payload", webhook.GitHub, http.Header{"X-Github-Event": {"push"}, "Content-Type": {"application/x-www-form-urlencoded"}}, `ref=refs/heads/main`, webhook.Event{}, true},
		{"gitlab push", webhook.GitLab, http.Header{"X-Gitlab-Event": {"Push Hook"}}, `{"ref":"refs/heads/main"}`,
			webhook.Event{Kind: webhook.KindPush, Name: "Push Hook", Branches: []string{"main"}}, false},
		{"gitlab tag push hook", webhook.GitLab, http.Header{"X-Gitlab-Event": {"Tag Push Hook"}}, `{"ref":"refs/tags/v1"}`,
			webhook.Event{Kind: webhook.KindOther, Name: "Tag Push Hook"}, false},
		{"gitlab system hook not json", webhook.GitLab, http.Header{"X-Gitlab-Event": {"System Hook"}}, `[`, webhook.Event{}, true},
		{"forgejo event wins over gitea", webhook.Gitea, http.Header{"X-Forgejo-Event": {"push"}, "X-Gitea-Event": {"push"}}, `{"ref":"refs/heads/main"}`,
			webhook.Event{Kind: webhook.KindPush, Name: "push", Branches: []string{"main"}}, false},
		{"gitea no event header", webhook.Gitea, http.Header{}, `{}`, webhook.Event{}, true},
		{"bitbucket ping", webhook.Bitbucket, http.Header{"X-Event-Key": {"diagnostics:ping"}}, ``,
			webhook.Event{Kind: webhook.KindPing, Name: "diagnostics:ping"}, false},
		{"bitbucket branch deleted", webhook.Bitbucket, http.Header{"X-Event-Key": {"repo:push"}}, `{"push":{"changes":[{"new":null}]}}`,
			webhook.Event{Kind: webhook.KindPush, Name: "repo:push"}, false},
		{"bitbucket without push", webhook.Bitbucket, http.Header{"X-Event-Key": {"repo:push"}}, `{"changes":[]}`, webhook.Event{}, true},
		{"unknown provider", "sourcehut", http.Header{}, `{}`, webhook.Event{}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := webhook.ParsePush(c.p, c.h, []byte(c.body))
			if (err != nil) != c.wantErr {
				t.Fatalf("err = %v, want error: %v", err, c.wantErr)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("got %+v, want %+v", got, c.want)
			}
		})
	}
}

// FuzzVerify checks that Verify never panics, that a signature made with
// the secret always verifies, and that a signature it accepts is the one
// the secret makes (so no malformed header slips through).
func FuzzVerify(f *testing.F) {
	f.Add(uint8(0), []byte("secret"), "sha256=00", []byte(`{"ref":"refs/heads/main"}`))
	f.Add(uint8(1), []byte("secret"), "secret", []byte(`{}`))
	f.Add(uint8(2), []byte("k"), strings.Repeat("ab", 32), []byte(""))
	f.Add(uint8(3), []byte(""), "sha256=", []byte("x"))
	f.Fuzz(func(t *testing.T, pi uint8, secret []byte, sig string, body []byte) {
		p := webhook.Providers()[int(pi)%len(webhook.Providers())]
		header := map[webhook.Provider]string{
			webhook.GitHub:    "X-Hub-Signature-256",
			webhook.GitLab:    "X-Gitlab-Token",
			webhook.Gitea:     "X-Gitea-Signature",
			webhook.Bitbucket: "X-Hub-Signature",
		}[p]
		mac := hex.EncodeToString(webhook.Sign(secret, body))
		valid := map[webhook.Provider]string{
			webhook.GitHub:    "sha256=" + mac,
			webhook.GitLab:    string(secret),
			webhook.Gitea:     mac,
			webhook.Bitbucket: "sha256=" + mac,
		}[p]

		// The fuzzed header value: accepted only if it means the same as
		// the valid one.
		h := http.Header{}
		h.Set(header, sig)
		if err := webhook.Verify(p, secret, h, body); err == nil {
			if len(secret) == 0 {
				t.Fatalf("%s: accepted a delivery with an empty secret", p)
			}
			if p == webhook.GitLab {
				if sig != string(secret) {
					t.Fatalf("gitlab: accepted token %q for secret %q", sig, secret)
				}
			} else {
				got := strings.ToLower(strings.TrimSpace(strings.TrimPrefix(sig, "sha256=")))
				if got != mac {
					t.Fatalf("%s: accepted signature %q, want %q", p, sig, valid)
				}
			}
		}

		// The real signature always verifies, unless the secret is empty,
		// which never does.
		h = http.Header{}
		h.Set(header, valid)
		err := webhook.Verify(p, secret, h, body)
		if len(secret) > 0 && err != nil {
			t.Fatalf("%s: valid signature refused: %v", p, err)
		}
		if len(secret) == 0 && err == nil {
			t.Fatalf("%s: empty secret verified", p)
		}
	})
}

// FuzzParsePush checks that ParsePush never panics on a verified body and
// that what it returns is well-formed.
func FuzzParsePush(f *testing.F) {
	f.Add(uint8(0), "push", "application/json", []byte(`{"ref":"refs/heads/main"}`))
	f.Add(uint8(1), "System Hook", "", []byte(`{"object_kind":"push","ref":"refs/heads/main"}`))
	f.Add(uint8(2), "push", "application/x-www-form-urlencoded", []byte(`payload=%7B%22ref%22%3A%22refs%2Fheads%2Fmain%22%7D`))
	f.Add(uint8(3), "repo:push", "", []byte(`{"push":{"changes":[{"new":{"type":"branch","name":"main"}},{"new":null}]}}`))
	f.Fuzz(func(t *testing.T, pi uint8, event, contentType string, body []byte) {
		p := webhook.Providers()[int(pi)%len(webhook.Providers())]
		h := http.Header{}
		for _, name := range []string{"X-GitHub-Event", "X-Gitlab-Event", "X-Gitea-Event", "X-Event-Key"} {
			h.Set(name, event)
		}
		h.Set("Content-Type", contentType)
		ev, err := webhook.ParsePush(p, h, bytes.Clone(body))
		if err != nil {
			if ev.Kind != "" || ev.Branches != nil {
				t.Fatalf("error %v with a non-zero event %+v", err, ev)
			}
			return
		}
		switch ev.Kind {
		case webhook.KindPush, webhook.KindPing, webhook.KindOther:
		default:
			t.Fatalf("unknown kind %q", ev.Kind)
		}
		if ev.Kind != webhook.KindPush && len(ev.Branches) > 0 {
			t.Fatalf("%s event carries branches %v", ev.Kind, ev.Branches)
		}
		for _, b := range ev.Branches {
			if b == "" {
				t.Fatalf("empty branch name in %+v", ev)
			}
			if !ev.Pushes(b) {
				t.Fatalf("Pushes(%q) false for %+v", b, ev)
			}
		}
	})
}
