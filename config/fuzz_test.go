package config_test

import (
	"errors"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	toml "github.com/pelletier/go-toml/v2"

	"github.com/lockstep-gitops/lockstep/config"
)

// fuzzName is what a valid environment or project name looks like; the
// fuzz target checks Parse against it independently of the package's own
// regexp.
var fuzzName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

// FuzzParse feeds arbitrary documents to config.Parse. Parse must never
// panic; what it accepts must be a Config the agent can run with as is (the
// invariants below are what the rest of lockstep relies on without
// re-checking); what it refuses must come back as a *config.Error listing
// at least one problem; a password pasted into [repo].url must never come
// back in the error; and the same bytes must always give the same answer,
// so an operator re-running validate sees the same report.
//
// Seeds: the shipped config.example.toml, the f.Add documents below and
// testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	example, err := os.ReadFile(filepath.Join("..", "config.example.toml"))
	if err != nil {
		f.Fatalf("read the example config as a seed: %v", err)
	}
	f.Add(string(example))
	f.Add("[repo]\nurl = \"https://git.example.com/acme/infra.git\"\n\n[[environment]]\nname = \"production\"\n")
	f.Add("state_dir = \"relative\"\n[repo]\nurl = \"ssh://git@h/x.git\"\nbrnach = \"main\"\n[[environment]]\nname = \"a\"\n[[environment]]\nname = \"a\"\n")
	f.Add("[repo]\nurl = \"https://me:hunter22@git.example.com/x.git\"\n[[environment]]\nname = \"a\"\n")
	f.Add("[repo]\nurl = \"git@github.com:acme/infra.git\"\nknown_hosts = \"/etc/ssh/known\"\nssh_key = \"/k\"\n" +
		"[[environment]]\nname = \"x\"\ncompose_files = [\"deploy/compose.yaml\", 3]\nenv_files = [\"/etc/x.env\"]\nproject = \"p\"\n" +
		"[[notify]]\nkind = \"slack\"\nurl_file = \"/u\"\nevents = [\"deploy\"]\n[webhook]\nlisten = \":9000\"\nsecret_file = \"/s\"\n")
	f.Add("[repo\nurl = ")

	f.Fuzz(func(t *testing.T, doc string) {
		const file = "/etc/lockstep/lockstep.toml"
		cfg, err := config.Parse(file, []byte(doc))

		// Same input, same answer, down to the order of problems.
		cfg2, err2 := config.Parse(file, []byte(doc))
		if !reflect.DeepEqual(cfg, cfg2) || errString(err) != errString(err2) {
			t.Fatalf("two parses of the same document differ:\n%+v / %v\n%+v / %v", cfg, err, cfg2, err2)
		}

		if err != nil {
			if cfg != nil {
				t.Fatalf("error %v returned with a non-nil config", err)
			}
			var ce *config.Error
			if !errors.As(err, &ce) {
				t.Fatalf("error %T %q is not a *config.Error", err, err)
			}
			checkProblems(t, ce, file)
			checkPasswordNotEchoed(t, doc, err)
			return
		}
		checkConfig(t, cfg, file)
	})
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// checkProblems: a refusal says what is wrong, and where, for every problem.
func checkProblems(t *testing.T, ce *config.Error, file string) {
	t.Helper()
	if len(ce.Problems) == 0 {
		t.Fatalf("*config.Error without problems: %q", ce.Error())
	}
	if ce.Path != file {
		t.Fatalf("error path %q, want %q", ce.Path, file)
	}
	lines := strings.Split(ce.Error(), "\n")
	if len(lines) < len(ce.Problems) {
		t.Fatalf("%d problems printed on %d lines: %q", len(ce.Problems), len(lines), ce.Error())
	}
	seenLineless := false
	prev := 0
	for i, p := range ce.Problems {
		if strings.TrimSpace(p.Msg) == "" {
			t.Fatalf("problem %d has no message: %+v", i, p)
		}
		if p.Line < 0 {
			t.Fatalf("problem %d has a negative line: %+v", i, p)
		}
		// File order, line-less problems last (what editors jump through).
		if p.Line == 0 {
			seenLineless = true
			continue
		}
		if seenLineless || p.Line < prev {
			t.Fatalf("problems out of file order: %+v", ce.Problems)
		}
		prev = p.Line
	}
}

// checkPasswordNotEchoed: when [repo].url carries a password, the password
// must not appear in the error text, which ends up in logs and journald.
// The check only runs when the password cannot legitimately be in the error
// because of some other value: it is a distinctive token that appears once
// among all decoded keys and values of the document.
func checkPasswordNotEchoed(t *testing.T, doc string, err error) {
	t.Helper()
	var m map[string]any
	if toml.Unmarshal([]byte(doc), &m) != nil {
		return
	}
	repo, _ := m["repo"].(map[string]any)
	raw, _ := repo["url"].(string)
	u, perr := url.Parse(raw)
	if perr != nil || u.User == nil {
		return
	}
	pw, ok := u.User.Password()
	if !ok || !distinctive(pw) || occurrences(m, pw) != 1 {
		return
	}
	if strings.Contains(err.Error(), pw) {
		t.Fatalf("the password of [repo].url %q is echoed in the error:\n%v", raw, err)
	}
}

var distinctiveRE = regexp.MustCompile(`^[A-Za-z0-9]{8,}$`)

// distinctive is a token no fixed message text contains by chance: at
// least eight letters and digits, mixing both.
func distinctive(s string) bool {
	return distinctiveRE.MatchString(s) && strings.ContainsAny(s, "0123456789") &&
		strings.IndexFunc(s, func(r rune) bool { return r < '0' || r > '9' }) >= 0
}

// occurrences counts s in every key and string value of a decoded document.
func occurrences(v any, s string) int {
	switch v := v.(type) {
	case string:
		return strings.Count(v, s)
	case map[string]any:
		n := 0
		for k, e := range v {
			n += strings.Count(k, s) + occurrences(e, s)
		}
		return n
	case []any:
		n := 0
		for _, e := range v {
			n += occurrences(e, s)
		}
		return n
	}
	return 0
}

// checkConfig holds an accepted config to what its doc comments promise.
func checkConfig(t *testing.T, cfg *config.Config, file string) {
	t.Helper()
	if cfg == nil {
		t.Fatal("nil config without an error")
	}
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("accepted config breaks an invariant: "+format, args...)
	}
	if cfg.Path != file {
		fail("Path %q, want %q", cfg.Path, file)
	}
	if !filepath.IsAbs(cfg.StateDir) || filepath.Clean(cfg.StateDir) != cfg.StateDir {
		fail("state_dir %q is not absolute and clean", cfg.StateDir)
	}

	r := cfg.Repo
	if r.URL == "" {
		fail("empty [repo].url")
	}
	if u, err := url.Parse(r.URL); err == nil && u.User != nil {
		if _, ok := u.User.Password(); ok {
			fail("[repo].url %q holds a password", r.URL)
		}
	}
	if r.Branch == "" || strings.HasPrefix(r.Branch, "refs/") || strings.ContainsAny(r.Branch, " \t~^:?*[\\") {
		fail("[repo].branch %q", r.Branch)
	}
	if r.PollInterval < config.MinPollInterval {
		fail("[repo].poll_interval %s below %s", r.PollInterval, config.MinPollInterval)
	}
	if r.Timeout < config.MinTimeout {
		fail("[repo].timeout %s below %s", r.Timeout, config.MinTimeout)
	}
	for name, p := range map[string]string{
		"token_file": r.TokenFile, "ssh_key": r.SSHKey,
		"ssh_key_passphrase_file": r.SSHKeyPassphraseFile, "known_hosts": r.KnownHosts,
	} {
		if p != "" && !filepath.IsAbs(p) {
			fail("[repo].%s %q is relative", name, p)
		}
	}
	if r.SSHKeyPassphraseFile != "" && r.SSHKey == "" {
		fail("ssh_key_passphrase_file without ssh_key")
	}

	if !config.IsLogLevel(cfg.Log.Level) || !config.IsLogFormat(cfg.Log.Format) {
		fail("[log] %+v", cfg.Log)
	}
	if cfg.Agent.DriftInterval < config.MinDriftInterval || cfg.Agent.ShutdownGrace < config.MinTimeout {
		fail("[agent] %+v", cfg.Agent)
	}
	if cfg.Health.Timeout < time.Second || cfg.Health.Bake < 0 {
		fail("[health] %+v", cfg.Health)
	}
	if cfg.API.Socket == "" && cfg.API.Listen == "" {
		fail("[api] has neither socket nor listen")
	}
	if cfg.API.Socket != "" && !filepath.IsAbs(cfg.API.Socket) {
		fail("[api].socket %q is relative", cfg.API.Socket)
	}
	if cfg.Webhook.Listen != "" && !filepath.IsAbs(cfg.Webhook.SecretFile) {
		fail("[webhook].listen without an absolute secret_file: %+v", cfg.Webhook)
	}
	if cfg.Webhook.Listen == "" && cfg.Webhook.SecretFile != "" {
		fail("[webhook].secret_file without listen")
	}
	for i, n := range cfg.Notify {
		if (n.Kind != "webhook" && n.Kind != "slack") || !filepath.IsAbs(n.URLFile) || len(n.Events) == 0 {
			fail("[[notify]][%d] %+v", i, n)
		}
	}

	if len(cfg.Environments) == 0 {
		fail("no environment")
	}
	names, projects := map[string]bool{}, map[string]bool{}
	for i, e := range cfg.Environments {
		if !fuzzName.MatchString(e.Name) || names[e.Name] {
			fail("environment %d: name %q invalid or not unique", i, e.Name)
		}
		names[e.Name] = true
		if !fuzzName.MatchString(e.Project) || projects[e.Project] {
			fail("environment %d: project %q invalid or not unique", i, e.Project)
		}
		projects[e.Project] = true
		if got, ok := cfg.Environment(e.Name); !ok || !reflect.DeepEqual(got, e) {
			fail("Environment(%q) does not find environment %d", e.Name, i)
		}
		for _, p := range append([]string{e.PinFile}, e.ComposeFiles...) {
			if !inRepo(p) {
				fail("environment %q: %q is not a clean path inside the repository", e.Name, p)
			}
		}
		for _, p := range e.EnvFiles {
			if !filepath.IsAbs(p) || filepath.Clean(p) != p {
				fail("environment %q: env file %q is not absolute and clean", e.Name, p)
			}
		}
		if e.HealthTimeout < time.Second || e.Bake < 0 {
			fail("environment %q: health_timeout %s, bake %s", e.Name, e.HealthTimeout, e.Bake)
		}
	}
	if !reflect.DeepEqual(cfg.EnvironmentNames(), namesOf(cfg.Environments)) {
		fail("EnvironmentNames %v out of file order", cfg.EnvironmentNames())
	}
}

// inRepo: a non-empty, clean, relative slash path that stays inside the
// repository.
func inRepo(p string) bool {
	return p != "" && !path.IsAbs(p) && !filepath.IsAbs(p) && path.Clean(p) == p &&
		p != "." && p != ".." && !strings.HasPrefix(p, "../")
}

func namesOf(envs []config.Environment) []string {
	out := make([]string, len(envs))
	for i, e := range envs {
		out[i] = e.Name
	}
	return out
}
