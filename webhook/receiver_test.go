package webhook_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/rs/zerolog"

	"github.com/lockstep-gitops/lockstep/webhook"
)

const testSecret = "s3cr3t-shared-with-the-git-host"

// Bodies as the providers send them (trimmed to the fields that matter plus
// some that do not, so that unknown fields are shown to be ignored).
func pushBody(p webhook.Provider, branch string) []byte {
	switch p {
	case webhook.Bitbucket:
		return fmt.Appendf(nil, `{"push":{"changes":[{"new":{"type":"branch","name":%q,"target":{"hash":"9fceb02d0ae5"}},"old":null}]},"repository":{"full_name":"acme/infra"}}`, branch)
	case webhook.GitLab:
		return fmt.Appendf(nil, `{"object_kind":"push","ref":"refs/heads/%s","checkout_sha":"9fceb02d0ae598e95dc970b74767f19372d61af8"}`, branch)
	}
	return fmt.Appendf(nil, `{"ref":"refs/heads/%s","after":"9fceb02d0ae598e95dc970b74767f19372d61af8","repository":{"full_name":"acme/infra"}}`, branch)
}

func tagPushBody(p webhook.Provider) []byte {
	if p == webhook.Bitbucket {
		return []byte(`{"push":{"changes":[{"new":{"type":"tag","name":"v1.0.0"}}]}}`)
	}
	return []byte(`{"ref":"refs/tags/v1.0.0"}`)
}

// eventHeaders sets the provider's event header for kind "push", "ping" or
// "other".
func eventHeaders(p webhook.Provider, kind string) http.Header {
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	names := map[webhook.Provider]map[string][2]string{
		webhook.GitHub:    {"push": {"X-GitHub-Event", "push"}, "ping": {"X-GitHub-Event", "ping"}, "other": {"X-GitHub-Event", "issues"}},
		webhook.GitLab:    {"push": {"X-Gitlab-Event", "Push Hook"}, "other": {"X-Gitlab-Event", "Merge Request Hook"}},
		webhook.Gitea:     {"push": {"X-Gitea-Event", "push"}, "other": {"X-Gitea-Event", "pull_request"}},
		webhook.Bitbucket: {"push": {"X-Event-Key", "repo:push"}, "ping": {"X-Event-Key", "diagnostics:ping"}, "other": {"X-Event-Key", "pullrequest:created"}},
	}
	kv := names[p][kind]
	h.Set(kv[0], kv[1])
	return h
}

// signHeaders adds the signature a git host configured with secret would
// send for body.
func signHeaders(p webhook.Provider, h http.Header, secret string, body []byte) {
	sig := hex.EncodeToString(webhook.Sign([]byte(secret), body))
	switch p {
	case webhook.GitHub:
		h.Set("X-Hub-Signature-256", "sha256="+sig)
	case webhook.Bitbucket:
		h.Set("X-Hub-Signature", "sha256="+sig)
	case webhook.Gitea:
		h.Set("X-Gitea-Signature", sig)
	case webhook.GitLab:
		h.Set("X-Gitlab-Token", secret)
	}
}

type nudges struct {
	n    atomic.Int64
	mu   sync.Mutex
	seen []webhook.Provider
}

func (c *nudges) nudge(p webhook.Provider) {
	c.n.Add(1)
	c.mu.Lock()
	c.seen = append(c.seen, p)
	c.mu.Unlock()
}

func writeSecret(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "webhook-secret")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func newReceiver(t *testing.T, maxBody int64, logTo io.Writer) (*webhook.Receiver, *nudges) {
	t.Helper()
	c := &nudges{}
	if logTo == nil {
		logTo = io.Discard
	}
	r, err := webhook.New(webhook.Options{
		SecretFile: writeSecret(t, testSecret+"\n"), // the newline an editor adds is not part of the secret
		Branch:     "main",
		MaxBody:    maxBody,
		Nudge:      c.nudge,
		Log:        zerolog.New(logTo).Level(zerolog.DebugLevel),
	})
	if err != nil {
		t.Fatal(err)
	}
	return r, c
}

func TestReceiverDeliveries(t *testing.T) {
	const maxBody = 4096
	type tc struct {
		name      string
		method    string
		header    http.Header
		body      []byte
		wantCode  int
		wantBody  string
		wantNudge bool
	}
	signed := func(p webhook.Provider, kind, secret string, body []byte) http.Header {
		h := eventHeaders(p, kind)
		signHeaders(p, h, secret, body)
		return h
	}
	var logs bytes.Buffer
	for _, p := range webhook.Providers() {
		push := pushBody(p, "main")
		cases := []tc{
			{name: "valid push to the tracked branch", header: signed(p, "push", testSecret, push), body: push, wantCode: 202, wantBody: "accepted", wantNudge: true},
			{name: "missing signature", header: eventHeaders(p, "push"), body: push, wantCode: 401, wantBody: "missing signature"},
			{name: "wrong secret", header: signed(p, "push", "not-the-secret", push), body: push, wantCode: 401, wantBody: "bad signature"},
			{name: "unparsable body with a bad signature is refused before parsing", header: signed(p, "push", "not-the-secret", []byte("{")), body: []byte("{"), wantCode: 401, wantBody: "bad signature"},
			{name: "push to another branch", header: signed(p, "push", testSecret, pushBody(p, "feature/x")), body: pushBody(p, "feature/x"), wantCode: 200, wantBody: "ignored"},
			{name: "push of a tag", header: signed(p, "push", testSecret, tagPushBody(p)), body: tagPushBody(p), wantCode: 200, wantBody: "ignored"},
			{name: "other event", header: signed(p, "other", testSecret, []byte(`{"action":"opened"}`)), body: []byte(`{"action":"opened"}`), wantCode: 200, wantBody: "ignored"},
			{name: "verified but unparsable push", header: signed(p, "push", testSecret, []byte(`{"ref":`)), body: []byte(`{"ref":`), wantCode: 400},
			{name: "oversize body", header: signed(p, "push", testSecret, bytes.Repeat([]byte("x"), maxBody+1)), body: bytes.Repeat([]byte("x"), maxBody+1), wantCode: 413},
			{name: "GET", method: http.MethodGet, header: signed(p, "push", testSecret, nil), wantCode: 405},
		}
		if p != webhook.GitLab {
			// GitLab's token does not depend on the body (it relies on TLS).
			cases = append(cases, tc{name: "signature over another body", header: signed(p, "push", testSecret, pushBody(p, "other")), body: push, wantCode: 401, wantBody: "bad signature"})
		}
		if p == webhook.GitHub || p == webhook.Bitbucket {
			ping := []byte(`{"zen":"Keep it logically awesome.","hook_id":1}`)
			cases = append(cases, tc{name: "ping", header: signed(p, "ping", testSecret, ping), body: ping, wantCode: 200, wantBody: "pong"})
		}
		for _, c := range cases {
			t.Run(string(p)+"/"+c.name, func(t *testing.T) {
				r, n := newReceiver(t, maxBody, &logs)
				method := c.method
				if method == "" {
					method = http.MethodPost
				}
				req := httptest.NewRequest(method, "/hooks/"+string(p), bytes.NewReader(c.body))
				req.Header = c.header
				rec := httptest.NewRecorder()
				r.Handler().ServeHTTP(rec, req)
				if rec.Code != c.wantCode {
					t.Fatalf("status %d, want %d (body %q)", rec.Code, c.wantCode, rec.Body.String())
				}
				if c.wantBody != "" && strings.TrimSpace(rec.Body.String()) != c.wantBody {
					t.Errorf("body %q, want %q", rec.Body.String(), c.wantBody)
				}
				want := int64(0)
				if c.wantNudge {
					want = 1
				}
				if got := n.n.Load(); got != want {
					t.Errorf("Nudge called %d times, want %d", got, want)
				}
				if want == 1 && n.seen[0] != p {
					t.Errorf("Nudge got provider %q, want %q", n.seen[0], p)
				}
			})
		}
	}

	// Every case above logged; none may have logged the secret or a
	// signature.
	out := logs.String()
	if strings.Contains(out, testSecret) {
		t.Errorf("the secret appears in the logs:\n%s", out)
	}
	if strings.Contains(out, "sha256=") || strings.Contains(out, hex.EncodeToString(webhook.Sign([]byte(testSecret), pushBody(webhook.Gitea, "main")))) {
		t.Errorf("a signature appears in the logs:\n%s", out)
	}
	if !strings.Contains(out, `"result":"accepted"`) || !strings.Contains(out, `"provider":"bitbucket"`) {
		t.Errorf("logs lack the provider and result fields:\n%s", out)
	}
}

func TestReceiverProviderVariants(t *testing.T) {
	cases := []struct {
		name      string
		provider  webhook.Provider
		header    http.Header
		body      []byte
		wantCode  int
		wantNudge bool
	}{
		{
			name:     "forgejo headers only",
			provider: webhook.Gitea,
			header: http.Header{
				"X-Forgejo-Event":     {"push"},
				"X-Forgejo-Signature": {hex.EncodeToString(webhook.Sign([]byte(testSecret), pushBody(webhook.Gitea, "main")))},
			},
			body:     pushBody(webhook.Gitea, "main"),
			wantCode: 202, wantNudge: true,
		},
		{
			name:     "gitlab system hook push",
			provider: webhook.GitLab,
			header:   http.Header{"X-Gitlab-Event": {"System Hook"}, "X-Gitlab-Token": {testSecret}},
			body:     []byte(`{"object_kind":"push","event_name":"push","ref":"refs/heads/main"}`),
			wantCode: 202, wantNudge: true,
		},
		{
			name:     "gitlab system hook of another kind",
			provider: webhook.GitLab,
			header:   http.Header{"X-Gitlab-Event": {"System Hook"}, "X-Gitlab-Token": {testSecret}},
			body:     []byte(`{"event_name":"project_create","ref":"refs/heads/main"}`),
			wantCode: 200,
		},
		{
			name:     "gitlab token of another length",
			provider: webhook.GitLab,
			header:   http.Header{"X-Gitlab-Event": {"Push Hook"}, "X-Gitlab-Token": {testSecret + "x"}},
			body:     pushBody(webhook.GitLab, "main"),
			wantCode: 401,
		},
		{
			name:     "github form-encoded payload",
			provider: webhook.GitHub,
			header: func() http.Header {
				body := []byte("payload=" + url.QueryEscape(string(pushBody(webhook.GitHub, "main"))))
				return http.Header{
					"Content-Type":        {"application/x-www-form-urlencoded"},
					"X-Github-Event":      {"push"},
					"X-Hub-Signature-256": {"sha256=" + hex.EncodeToString(webhook.Sign([]byte(testSecret), body))},
				}
			}(),
			body:     []byte("payload=" + url.QueryEscape(string(pushBody(webhook.GitHub, "main")))),
			wantCode: 202, wantNudge: true,
		},
		{
			name:     "bitbucket push of several branches including the tracked one",
			provider: webhook.Bitbucket,
			header: func() http.Header {
				h := http.Header{"X-Event-Key": {"repo:push"}}
				signHeaders(webhook.Bitbucket, h, testSecret, []byte(`{"push":{"changes":[{"new":null,"old":{"type":"branch","name":"gone"}},{"new":{"type":"branch","name":"dev"}},{"new":{"type":"branch","name":"main"}}]}}`))
				return h
			}(),
			body:     []byte(`{"push":{"changes":[{"new":null,"old":{"type":"branch","name":"gone"}},{"new":{"type":"branch","name":"dev"}},{"new":{"type":"branch","name":"main"}}]}}`),
			wantCode: 202, wantNudge: true,
		},
		{
			name:     "bitbucket sha1 signature is refused",
			provider: webhook.Bitbucket,
			header:   http.Header{"X-Event-Key": {"repo:push"}, "X-Hub-Signature": {"sha1=0123456789abcdef0123456789abcdef01234567"}},
			body:     pushBody(webhook.Bitbucket, "main"),
			wantCode: 401,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, n := newReceiver(t, 0, nil)
			req := httptest.NewRequest(http.MethodPost, "/hooks/"+string(c.provider), bytes.NewReader(c.body))
			req.Header = c.header
			rec := httptest.NewRecorder()
			r.Handler().ServeHTTP(rec, req)
			if rec.Code != c.wantCode {
				t.Fatalf("status %d, want %d (body %q)", rec.Code, c.wantCode, rec.Body.String())
			}
			if got := n.n.Load() == 1; got != c.wantNudge {
				t.Errorf("nudged %v, want %v", got, c.wantNudge)
			}
		})
	}
}

// countingReader yields an endless body and counts what was read of it.
type countingReader struct{ n int64 }

func (c *countingReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'x'
	}
	c.n += int64(len(p))
	return len(p), nil
}

func TestReceiverOversizeIsNotReadInFull(t *testing.T) {
	const maxBody = 1 << 10
	r, n := newReceiver(t, maxBody, nil)
	body := &countingReader{}
	req := httptest.NewRequest(http.MethodPost, "/hooks/github", io.LimitReader(body, 64<<20))
	req.ContentLength = -1 // chunked: the bound is enforced while reading
	req.Header = eventHeaders(webhook.GitHub, "push")
	rec := httptest.NewRecorder()
	r.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d, want 413", rec.Code)
	}
	// ReadAll asks for ever larger buffers, so the reader may be asked for
	// more than the bound at once; what matters is that it is not drained.
	if body.n > 4*maxBody {
		t.Errorf("read %d bytes of an oversize body bounded at %d", body.n, maxBody)
	}
	if n.n.Load() != 0 {
		t.Error("oversize delivery nudged")
	}

	// A declared Content-Length over the bound is refused unread.
	body = &countingReader{}
	req = httptest.NewRequest(http.MethodPost, "/hooks/github", io.LimitReader(body, 2*maxBody))
	req.ContentLength = 2 * maxBody
	rec = httptest.NewRecorder()
	r.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusRequestEntityTooLarge || body.n != 0 {
		t.Errorf("status %d after reading %d bytes, want 413 after reading none", rec.Code, body.n)
	}
}

func TestReceiverUnknownPath(t *testing.T) {
	r, _ := newReceiver(t, 0, nil)
	rec := httptest.NewRecorder()
	r.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/hooks/sourcehut", strings.NewReader("{}")))
	if rec.Code != http.StatusNotFound {
		t.Errorf("status %d, want 404", rec.Code)
	}
}

func TestNew(t *testing.T) {
	nudge := func(webhook.Provider) {}
	missing := filepath.Join(t.TempDir(), "no-such-secret")
	cases := []struct {
		name    string
		opts    webhook.Options
		wantErr string // substring; "" means success
	}{
		{"missing file", webhook.Options{SecretFile: missing, Branch: "main", Nudge: nudge}, missing},
		{"empty file", webhook.Options{SecretFile: writeSecret(t, " \n"), Branch: "main", Nudge: nudge}, "is empty"},
		{"no file configured", webhook.Options{Branch: "main", Nudge: nudge}, "secret_file"},
		{"no branch", webhook.Options{SecretFile: writeSecret(t, "x"), Nudge: nudge}, "branch"},
		{"no nudge", webhook.Options{SecretFile: writeSecret(t, "x"), Branch: "main"}, "Nudge"},
		{"negative bound", webhook.Options{SecretFile: writeSecret(t, "x"), Branch: "main", Nudge: nudge, MaxBody: -1}, "MaxBody"},
		{"valid", webhook.Options{SecretFile: writeSecret(t, "x"), Branch: "main", Nudge: nudge}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := webhook.New(c.opts)
			if c.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, c.wantErr)
			}
		})
	}
}

// TestConcurrentDeliveries verifies 1000 deliveries at once, half of them
// forged: every valid one nudges exactly once, no forged one does.
func TestConcurrentDeliveries(t *testing.T) {
	r, n := newReceiver(t, 0, nil)
	h := r.Handler()
	const total = 1000
	var wg sync.WaitGroup
	var wrong atomic.Int64
	for i := range total {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := webhook.Providers()[i%4]
			body := pushBody(p, "main")
			secret := testSecret
			want := http.StatusAccepted
			if i%2 == 1 {
				secret = fmt.Sprintf("forged-%d", i)
				want = http.StatusUnauthorized
			}
			hdr := eventHeaders(p, "push")
			signHeaders(p, hdr, secret, body)
			req := httptest.NewRequest(http.MethodPost, "/hooks/"+string(p), bytes.NewReader(body))
			req.Header = hdr
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != want {
				wrong.Add(1)
			}
		}()
	}
	wg.Wait()
	if wrong.Load() != 0 {
		t.Errorf("%d of %d deliveries got the wrong status", wrong.Load(), total)
	}
	if got := n.n.Load(); got != total/2 {
		t.Errorf("Nudge called %d times, want %d", got, total/2)
	}
}

// TestServe runs the receiver on a real listener and stops it with the
// context.
func TestServe(t *testing.T) {
	r, n := newReceiver(t, 0, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Serve(ctx, ln) }()

	body := pushBody(webhook.GitHub, "main")
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+ln.Addr().String()+"/hooks/github", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = eventHeaders(webhook.GitHub, "push")
	signHeaders(webhook.GitHub, req.Header, testSecret, body)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted || n.n.Load() != 1 {
		t.Errorf("status %d, nudges %d; want 202 and 1", resp.StatusCode, n.n.Load())
	}

	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve returned %v after the context ended, want nil", err)
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Error("listener still accepts connections after Serve returned")
	}
}

func TestVerifyErrors(t *testing.T) {
	body := []byte(`{"ref":"refs/heads/main"}`)
	good := http.Header{"X-Hub-Signature-256": {"sha256=" + hex.EncodeToString(webhook.Sign([]byte(testSecret), body))}}
	cases := []struct {
		name   string
		p      webhook.Provider
		secret string
		h      http.Header
		want   error
	}{
		{"valid", webhook.GitHub, testSecret, good, nil},
		{"empty secret never verifies", webhook.GitHub, "", http.Header{"X-Hub-Signature-256": {"sha256=" + hex.EncodeToString(webhook.Sign(nil, body))}}, webhook.ErrBadSignature},
		{"missing", webhook.GitHub, testSecret, http.Header{}, webhook.ErrMissingSignature},
		{"no prefix", webhook.GitHub, testSecret, http.Header{"X-Hub-Signature-256": {hex.EncodeToString(webhook.Sign([]byte(testSecret), body))}}, webhook.ErrBadSignature},
		{"not hex", webhook.GitHub, testSecret, http.Header{"X-Hub-Signature-256": {"sha256=zz"}}, webhook.ErrBadSignature},
		{"truncated", webhook.GitHub, testSecret, http.Header{"X-Hub-Signature-256": {good.Get("X-Hub-Signature-256")[:20]}}, webhook.ErrBadSignature},
		{"upper-case hex", webhook.GitHub, testSecret, http.Header{"X-Hub-Signature-256": {"sha256=" + strings.ToUpper(hex.EncodeToString(webhook.Sign([]byte(testSecret), body)))}}, nil},
		{"gitea missing", webhook.Gitea, testSecret, http.Header{}, webhook.ErrMissingSignature},
		{"gitlab missing", webhook.GitLab, testSecret, http.Header{}, webhook.ErrMissingSignature},
		{"bitbucket missing", webhook.Bitbucket, testSecret, good, webhook.ErrMissingSignature}, // GitHub's header is not Bitbucket's
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := webhook.Verify(c.p, []byte(c.secret), c.h, body)
			if c.want == nil {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				return
			}
			if !errors.Is(err, c.want) {
				t.Fatalf("Verify: %v, want %v", err, c.want)
			}
			if c.secret != "" && strings.Contains(err.Error(), c.secret) {
				t.Errorf("error %q contains the secret", err)
			}
		})
	}
	// The example GitHub's documentation gives for checking an
	// implementation, independent of Sign.
	documented := http.Header{"X-Hub-Signature-256": {"sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"}}
	if err := webhook.Verify(webhook.GitHub, []byte("It's a Secret to Everybody"), documented, []byte("Hello, World!")); err != nil {
		t.Errorf("GitHub's documented test vector: %v", err)
	}
	if err := webhook.Verify("sourcehut", []byte(testSecret), good, body); err == nil {
		t.Error("Verify accepted an unknown provider")
	}
}
