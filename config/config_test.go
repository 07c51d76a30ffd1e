package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/lockstep-gitops/lockstep/gitsource"
)

// minimal is the smallest valid config; cases below append to it or
// replace parts of it.
const minimal = `[repo]
url = "https://git.example.com/acme/infra.git"

[[environment]]
name = "production"
`

func TestDefaults(t *testing.T) {
	cfg, err := Parse("lockstep.toml", []byte(minimal))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	want := &Config{
		Path:     "lockstep.toml",
		StateDir: "/var/lib/lockstep",
		Repo: Repo{
			URL:          "https://git.example.com/acme/infra.git",
			Branch:       "main",
			PollInterval: time.Minute,
			Timeout:      60 * time.Second,
		},
		Log:     Log{Level: "info", Format: "json"},
		Agent:   Agent{DriftInterval: 5 * time.Minute, ShutdownGrace: time.Minute},
		API:     API{Socket: "/run/lockstep/lockstep.sock"},
		Health:  Health{Timeout: 2 * time.Minute, Bake: 15 * time.Second},
		Policy:  Policy{Mode: "warn"},
		Secrets: Secrets{RuntimeDir: "/run/lockstep"},
		Environments: []Environment{{
			HealthTimeout: 2 * time.Minute,
			Bake:          15 * time.Second,
			Name:          "production",
			PinFile:       "environments/production.toml",
			Project:       "production",
			Backend:       "compose",
		}},
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Fatalf("defaults:\n got %+v\nwant %+v", cfg, want)
	}
}

func TestParseValid(t *testing.T) {
	tests := []struct {
		name  string
		doc   string
		check func(t *testing.T, c *Config)
	}{
		{
			name: "ssh url with known_hosts and key",
			doc: `[repo]
url = "ssh://git@git.example.com/acme/infra.git"
ssh_key = "/etc/lockstep/key"
ssh_key_passphrase_file = "/etc/lockstep/key.pass"
known_hosts = "/etc/lockstep/known_hosts"
[[environment]]
name = "a"
`,
			check: func(t *testing.T, c *Config) {
				if c.Repo.SSHKey != "/etc/lockstep/key" || c.Repo.KnownHosts != "/etc/lockstep/known_hosts" {
					t.Errorf("ssh settings not kept: %+v", c.Repo)
				}
			},
		},
		{
			name: "scp-like url",
			doc: `[repo]
url = "git@github.com:acme/infra.git"
known_hosts = "/etc/lockstep/known_hosts"
[[environment]]
name = "a"
`,
		},
		{
			name: "local path and file url",
			doc: `[repo]
url = "/srv/git/infra.git"
[[environment]]
name = "a"
`,
		},
		{
			name: "file url",
			doc: `[repo]
url = "file:///srv/git/infra.git"
[[environment]]
name = "a"
`,
		},
		{
			name: "user name without password in an https url",
			doc: `[repo]
url = "https://oauth2@git.example.com/acme/infra.git"
token_file = "/etc/lockstep/token"
[[environment]]
name = "a"
`,
		},
		{
			name: "paths are cleaned and durations parsed",
			doc: `state_dir = "/var/lib/lockstep/"
[repo]
url = "https://git.example.com/x.git"
poll_interval = "1s"
timeout = "2m30s"
[engine]
host = "unix:///run/docker.sock"
[log]
level = "debug"
format = "console"
[[environment]]
name = "pr-142"
pin_file = "./envs//pr-142.toml"
compose_files = ["deploy/compose.yaml"]
project = "pr_142"
env_files = ["/etc/lockstep//pr.env"]
`,
			check: func(t *testing.T, c *Config) {
				e := c.Environments[0]
				if c.StateDir != "/var/lib/lockstep" || e.PinFile != "envs/pr-142.toml" || e.EnvFiles[0] != "/etc/lockstep/pr.env" {
					t.Errorf("paths not cleaned: state_dir=%q pin_file=%q env_files=%q", c.StateDir, e.PinFile, e.EnvFiles)
				}
				if c.Repo.PollInterval != time.Second || c.Repo.Timeout != 150*time.Second {
					t.Errorf("durations: poll=%v timeout=%v", c.Repo.PollInterval, c.Repo.Timeout)
				}
				if c.Log.Level != "debug" || c.Log.Format != "console" || c.Engine.Host != "unix:///run/docker.sock" {
					t.Errorf("log/engine: %+v %+v", c.Log, c.Engine)
				}
				if e.Project != "pr_142" {
					t.Errorf("project = %q", e.Project)
				}
			},
		},
		{
			name: "inline environments",
			doc: `environment = [{name = "a"}, {name = "b", project = "bee"}]
[repo]
url = "https://git.example.com/x.git"
`,
			check: func(t *testing.T, c *Config) {
				if got := c.EnvironmentNames(); !reflect.DeepEqual(got, []string{"a", "b"}) {
					t.Errorf("names = %q", got)
				}
				if e, ok := c.Environment("b"); !ok || e.Project != "bee" {
					t.Errorf("Environment(b) = %+v, %v", e, ok)
				}
				if _, ok := c.Environment("c"); ok {
					t.Error("Environment(c) found")
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("x.toml", []byte(tt.doc))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if tt.check != nil {
				tt.check(t, c)
			}
		})
	}
}

// TestProblems checks one problem per case: its exact key, its line, and
// words of its message.
func TestProblems(t *testing.T) {
	repo := "[repo]\nurl = \"https://git.example.com/x.git\"\n"
	env := "[[environment]]\nname = \"a\"\n"
	tests := []struct {
		name string
		doc  string
		key  string
		line int
		msg  string // regexp
	}{
		{"state_dir relative", "state_dir = \"var/lib\"\n" + repo + env, "state_dir", 1, `must be an absolute path, got "var/lib"`},
		{"state_dir wrong type", "state_dir = 3\n" + repo + env, "state_dir", 1, `must be a string, got integer 3`},
		{"url missing", "[repo]\nbranch = \"main\"\n" + env, "[repo].url", 1, `required`},
		{"url missing without repo table", env, "[repo].url", 0, `required`},
		{"url bad scheme", "[repo]\nurl = \"git://h/x\"\n" + env, "[repo].url", 2, `scheme "git" is not supported`},
		{"url not a url", "[repo]\nurl = \"just-words\"\n" + env, "[repo].url", 2, `is not a repository URL`},
		{"url relative path", "[repo]\nurl = \"./repo\"\n" + env, "[repo].url", 2, `is not a repository URL`},
		{"url no host", "[repo]\nurl = \"https:///x\"\n" + env, "[repo].url", 2, `has no host`},
		{"url with password", "[repo]\nurl = \"https://me:hunter2@h/x\"\n" + env, "[repo].url", 2, `holds a password.*token_file`},
		{"file url with host", "[repo]\nurl = \"file://h/x\"\n" + env, "[repo].url", 2, `must name a local path`},
		{"branch invalid", repo + "branch = \"feat..x\"\n" + env, "[repo].branch", 3, `not a valid git branch name`},
		{"branch full ref", repo + "branch = \"refs/heads/main\"\n" + env, "[repo].branch", 3, `without refs/heads/`},
		{"poll too short", repo + "poll_interval = \"500ms\"\n" + env, "[repo].poll_interval", 3, `^must be at least 1s, got "500ms"$`},
		{"poll not a duration", repo + "poll_interval = \"5 minutes\"\n" + env, "[repo].poll_interval", 3, `"5 minutes" is not a duration`},
		{"poll integer", repo + "poll_interval = 60\n" + env, "[repo].poll_interval", 3, `must be a duration string.*integer 60`},
		{"timeout too short", repo + "timeout = \"10ms\"\n" + env, "[repo].timeout", 3, `must be at least 1s`},
		{"token_file with ssh", "[repo]\nurl = \"ssh://git@h/x\"\nknown_hosts = \"/k\"\ntoken_file = \"/t\"\n" + env, "[repo].token_file", 4, `only used with https:// or http://.*an ssh URL`},
		{"ssh_key with https", repo + "ssh_key = \"/k\"\n" + env, "[repo].ssh_key", 3, `only used with ssh URLs`},
		{"known_hosts with local", "[repo]\nurl = \"/srv/x\"\nknown_hosts = \"/k\"\n" + env, "[repo].known_hosts", 3, `only used with ssh URLs.*local repository`},
		{"known_hosts required for ssh", "[repo]\nurl = \"ssh://git@h/x\"\n" + env, "[repo].known_hosts", 1, `required for ssh URLs`},
		{"known_hosts required for scp-like", "[repo]\nurl = \"git@h:x.git\"\n" + env, "[repo].known_hosts", 1, `required for ssh URLs`},
		{"passphrase without key", "[repo]\nurl = \"ssh://git@h/x\"\nknown_hosts = \"/k\"\nssh_key_passphrase_file = \"/p\"\n" + env, "[repo].ssh_key_passphrase_file", 4, `without ssh_key`},
		{"token_file relative", repo + "token_file = \"token\"\n" + env, "[repo].token_file", 3, `must be an absolute path, got "token"`},
		{"inline token", repo + "token = \"ghp_secret\"\n" + env, "[repo].token", 3, "unknown key `token`; tokens are read from files: use `token_file`"},
		{"inline passphrase", repo + "ssh_key_passphrase = \"x\"\n" + env, "[repo].ssh_key_passphrase", 3, "use `ssh_key_passphrase_file`"},
		{"typo", repo + "brnach = \"dev\"\n" + env, "[repo].brnach", 3, "unknown key `brnach`; did you mean `branch`\\?"},
		{"unknown table", repo + env + "[metrics]\nport = 1\n", "[metrics]", 5, "unknown table `metrics`; valid keys here: state_dir, repo, engine, log, agent, api, webhook, health, notify, environment"},
		{"engine host bad", repo + "[engine]\nhost = \"ssh://me@h\"\n" + env, "[engine].host", 4, `not supported`},
		{"engine unix relative", repo + "[engine]\nhost = \"unix://docker.sock\"\n" + env, "[engine].host", 4, `absolute socket path`},
		{"log level", repo + "[log]\nlevel = \"verbose\"\n" + env, "[log].level", 4, `one of debug, info, warn, error; got "verbose"`},
		{"log format", repo + "[log]\nformat = \"text\"\n" + env, "[log].format", 4, `json or console, got "text"`},
		{"no environment", repo, "[[environment]]", 0, `at least one environment`},
		{"env name missing", repo + "[[environment]]\nproject = \"p\"\n", "[[environment]][0].name", 3, `required`},
		{"env name invalid", repo + "[[environment]]\nname = \"Prod\"\n", "[[environment]][0].name", 4, `"Prod" is not a valid name`},
		{"env name duplicate", repo + env + env, "[[environment]][1].name", 6, `"a" is already the name of \[\[environment\]\]\[0\]`},
		{"env key typo", repo + env + "nmae = \"b\"\n", "[[environment]][0].nmae", 5, "did you mean `name`"},
		{"windows bad day", repo + env + "windows = [\"Mon-Fri 09:00-16:00 UTC\", \"Mo-Fr 09:00-16:00 UTC\"]\n", "[[environment]][0].windows", 5, `element 1: window "Mo-Fr 09:00-16:00 UTC": "Mo" is not a day.*e.g. "Mon-Fri 09:00-16:00 Europe/Berlin"`},
		{"windows no zone", repo + env + "windows = [\"Mon 09:00-16:00\"]\n", "[[environment]][0].windows", 5, `element 0: .*has 2 of its 3 fields`},
		{"windows empty", repo + env + "windows = []\n", "[[environment]][0].windows", 5, `would never open`},
		{"backend unknown", repo + env + "backend = \"kubernetes\"\n", "[[environment]][0].backend", 5, `must be "compose" \(this host's engine\) or "swarm".*got "kubernetes"`},
		{"windows not a list", repo + env + "windows = \"Mon 09:00-16:00 UTC\"\n", "[[environment]][0].windows", 5, `must be an array of strings`},
		{"pin_file absolute", repo + env + "pin_file = \"/etc/p.toml\"\n", "[[environment]][0].pin_file", 5, `relative to the repository root`},
		{"pin_file escapes", repo + env + "pin_file = \"a/../../p.toml\"\n", "[[environment]][0].pin_file", 5, `without ".."`},
		{"compose_files escapes", repo + env + "compose_files = [\"ok.yaml\", \"../c.yaml\"]\n", "[[environment]][0].compose_files", 5, `element 1: must be a file inside the repository`},
		{"compose_files not array", repo + env + "compose_files = \"c.yaml\"\n", "[[environment]][0].compose_files", 5, `must be an array of strings, got string "c.yaml"`},
		{"compose_files element type", repo + env + "compose_files = [1]\n", "[[environment]][0].compose_files", 5, `element 0: must be a string, got integer 1`},
		{"project invalid", repo + env + "project = \"My App\"\n", "[[environment]][0].project", 5, `not a valid compose project name`},
		{"project duplicate by default", repo + env + "project = \"b\"\n[[environment]]\nname = \"b\"\n", "[[environment]][1].project", 6, `project "b" is already used by \[\[environment\]\]\[0\] \(a\)`},
		{"env_files relative", repo + env + "env_files = [\"prod.env\"]\n", "[[environment]][0].env_files", 5, `element 0: must be an absolute path on this host, got "prod.env"`},
		{"syntax error", repo + "branch = \n" + env, "", 3, `unexpected character`},
		{"duplicate table", repo + "[repo]\nbranch = \"x\"\n" + env, "[repo]", 3, `already exists`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("/etc/lockstep/lockstep.toml", []byte(tt.doc))
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("want *Error, got %v", err)
			}
			if len(ce.Problems) != 1 {
				t.Fatalf("want 1 problem, got %d:\n%v", len(ce.Problems), err)
			}
			p := ce.Problems[0]
			if p.Key != tt.key || p.Line != tt.line || !regexp.MustCompile(tt.msg).MatchString(p.Msg) {
				t.Errorf("got  %+v\nwant key %q line %d msg ~ %s", p, tt.key, tt.line, tt.msg)
			}
		})
	}
}

func TestAllProblemsAtOnce(t *testing.T) {
	doc := `state_dir = "relative"
[repo]
url = "https://git.example.com/x.git"
brnach = "dev"
poll_interval = "500ms"
[log]
level = "loud"
[[environment]]
name = "a"
[[environment]]
name = "a"
env_files = ["x.env"]
`
	_, err := Parse("/etc/lockstep/lockstep.toml", []byte(doc))
	want := strings.Join([]string{
		`/etc/lockstep/lockstep.toml:1: state_dir: must be an absolute path, got "relative"`,
		"/etc/lockstep/lockstep.toml:4: [repo].brnach: unknown key `brnach`; did you mean `branch`?",
		`/etc/lockstep/lockstep.toml:5: [repo].poll_interval: must be at least 1s, got "500ms"`,
		`/etc/lockstep/lockstep.toml:7: [log].level: must be one of debug, info, warn, error; got "loud"`,
		`/etc/lockstep/lockstep.toml:11: [[environment]][1].name: "a" is already the name of [[environment]][0]`,
		`/etc/lockstep/lockstep.toml:12: [[environment]][1].env_files: element 0: must be an absolute path on this host, got "x.env"`,
	}, "\n")
	if err == nil || err.Error() != want {
		t.Fatalf("got:\n%v\nwant:\n%s", err, want)
	}
}

// TestSecretsNeverEchoed: a credential pasted into the URL must not come
// back in an error, which ends up in logs.
func TestSecretsNeverEchoed(t *testing.T) {
	for _, url := range []string{
		"https://me:hunter2@git.example.com/x.git",
		"git://me:hunter2@git.example.com/x.git",
		"me:hunter2@git.example.com/x.git",
		"https://me:hunter2@/x",
		"//me:hunter2@git.example.com/x.git", // no scheme: not a local path either
	} {
		doc := "[repo]\nurl = \"" + url + "\"\n[[environment]]\nname = \"a\"\n"
		_, err := Parse("x.toml", []byte(doc))
		if err == nil {
			t.Errorf("%s: accepted", url)
			continue
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("secret echoed: %v", err)
		}
	}
	if got := gitsource.RedactURL("https://ghp_token@github.com/x.git"); strings.Contains(got, "ghp_token") {
		t.Errorf("RedactURL kept a token user name: %s", got)
	}
	if got := gitsource.RedactURL("ssh://git@github.com/x.git"); got != "ssh://git@github.com/x.git" {
		t.Errorf("RedactURL changed an ssh user: %s", got)
	}
}

func TestExampleFile(t *testing.T) {
	path := filepath.Join("..", "config.example.toml")
	cfg, err := Load(path)
	if err != nil {
		t.Fatalf("config.example.toml must load without problems:\n%v", err)
	}
	if cfg.Path != path || len(cfg.Environments) != 2 {
		t.Errorf("example loaded as %+v", cfg)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// Every accepted key must be documented, commented out or not.
	for _, k := range allKeys(reflect.TypeFor[file](), "") {
		name := k[strings.LastIndexByte(k, '.')+1:]
		re := regexp.MustCompile(`(?m)^(# )?` + regexp.QuoteMeta(name) + ` = |^(# )?\[\[?` + regexp.QuoteMeta(k) + `\]\]?$`)
		if !re.Match(data) {
			t.Errorf("config.example.toml does not mention %s", k)
		}
	}
}

// allKeys lists every toml key reachable in t, dotted ("repo.url"), tables
// included.
func allKeys(t reflect.Type, prefix string) []string {
	var keys []string
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("toml")
		if tag == "" || tag == "-" {
			continue
		}
		keys = append(keys, prefix+tag)
		ft := f.Type
		if ft.Kind() == reflect.Slice {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct {
			keys = append(keys, allKeys(ft, prefix+tag+".")...)
		}
	}
	return keys
}

// TestEveryFieldFromFile: a config that sets every key must fill every
// field of Config, so a field added to Config but not read from the file
// fails here.
func TestEveryFieldFromFile(t *testing.T) {
	doc := `state_dir = "/srv/lockstep"
[repo]
url = "ssh://git@h/x.git"
branch = "prod"
poll_interval = "5s"
timeout = "5s"
ssh_key = "/k"
ssh_key_passphrase_file = "/p"
known_hosts = "/kh"
[repo.verify]
commits = "pinned"
openpgp_keyring = "/keys.asc"
ssh_allowed_signers = "/allowed_signers"
[secrets]
age_identity = "/age.key"
runtime_dir = "/run/ls"
[engine]
host = "tcp://127.0.0.1:2375"
[log]
level = "warn"
format = "console"
[agent]
drift_interval = "1m"
shutdown_grace = "10s"
[api]
socket = "/run/x.sock"
listen = "127.0.0.1:9100"
[webhook]
listen = ":9101"
secret_file = "/s"
[health]
timeout = "1m"
bake = "5s"
[[notify]]
kind = "slack"
url_file = "/u"
events = ["failure"]
[policy]
mode = "enforce"
allow_privileged = true
allow_host_network = true
allow_host_pid = true
allow_host_ipc = true
allow_capabilities = ["NET_ADMIN"]
allow_devices = true
allow_docker_socket = true
allowed_bind_roots = ["/srv/data"]
[compose]
strict = true
[forge]
kind = "github"
api_url = "https://ghe.example.com/api/v3"
token_file = "/forge-token"
repository = "acme/infra"
context = "deploy/{environment}"
host = "web-1"
deployments = true
[[environment]]
name = "a"
health_timeout = "3m"
bake = "20s"
pin_file = "p.toml"
compose_files = ["c.yaml"]
project = "pa"
env_files = ["/e.env"]
min_commit = "9fceb02d0ae598e95dc970b74767f19372d61af8"
windows = ["Mon-Fri 09:00-16:00 Europe/Berlin"]
backend = "swarm"
[[environment_set]]
name = "review"
pins = "environments/review/*.toml"
max = 3
remove_volumes = true
ttl = "72h"
url = "https://${LOCKSTEP_SLUG}.review.example.com"
compose_files = ["c.yaml"]
env_files = ["/r.env"]
health_timeout = "3m"
bake = "20s"
windows = ["Sat 10:00-12:00 UTC"]
`
	cfg, err := Parse("x.toml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	// token_file cannot be set together with an ssh url; check it on its own.
	https, err := Parse("x.toml", []byte("[repo]\nurl = \"https://h/x\"\ntoken_file = \"/t\"\n[[environment]]\nname = \"a\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Repo.TokenFile = https.Repo.TokenFile
	assertNoZero(t, reflect.ValueOf(*cfg), "Config")
}

func TestAgentAPIAndWebhookProblems(t *testing.T) {
	tests := []struct {
		name, doc, want string
	}{
		{"webhook without secret", "[webhook]\nlisten = \":9000\"\n", "[webhook].secret_file: required with [webhook].listen"},
		{"secret without listen", "[webhook]\nsecret_file = \"/s\"\n", "[webhook].secret_file: set, but [webhook].listen is not"},
		{"relative secret", "[webhook]\nlisten = \":9000\"\nsecret_file = \"s\"\n", "[webhook].secret_file: must be an absolute path"},
		{"bad listen", "[api]\nlisten = \"localhost\"\n", "[api].listen: must be host:port"},
		{"bad port", "[webhook]\nlisten = \":http\"\nsecret_file = \"/s\"\n", "[webhook].listen: port must be a number"},
		{"no api at all", "[api]\nsocket = \"\"\n", "[api].socket: the local API needs a socket or [api].listen"},
		{"relative socket", "[api]\nsocket = \"x.sock\"\n", "[api].socket: must be an absolute path"},
		{"drift too often", "[agent]\ndrift_interval = \"1s\"\n", "[agent].drift_interval: must be at least 10s"},
		{"notify without kind", "[[notify]]\nurl_file = \"/u\"\n", "[[notify]][0].kind: required"},
		{"notify bad kind", "[[notify]]\nkind = \"email\"\nurl_file = \"/u\"\n", "[[notify]][0].kind: must be \"webhook\" or \"slack\""},
		{"notify url inline", "[[notify]]\nkind = \"slack\"\n", "[[notify]][0].url_file: required"},
		{"notify bad event", "[[notify]]\nkind = \"slack\"\nurl_file = \"/u\"\nevents = [\"oops\"]\n", "[[notify]][0].events: element 0: \"oops\" is not an event"},
		{"bake of zero", "[health]\nbake = \"0s\"\n", "[health].bake: must be at least 1s"},
		{"health timeout too short", "[health]\ntimeout = \"10ms\"\n", "[health].timeout: must be at least 1s"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			doc := "[repo]\nurl = \"https://h/x\"\n[[environment]]\nname = \"a\"\n" + tc.doc
			_, err := Parse("x.toml", []byte(doc))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want a problem containing %q", err, tc.want)
			}
		})
	}
	cfg, err := Parse("x.toml", []byte("[repo]\nurl = \"https://h/x\"\n[[environment]]\nname = \"a\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.API.Socket != DefaultSocket || cfg.Agent.DriftInterval != DefaultDriftInterval || cfg.Agent.ShutdownGrace != DefaultShutdownGrace || cfg.Webhook.Listen != "" {
		t.Fatalf("defaults: agent %+v api %+v webhook %+v", cfg.Agent, cfg.API, cfg.Webhook)
	}
}

func assertNoZero(t *testing.T, v reflect.Value, name string) {
	t.Helper()
	switch v.Kind() {
	case reflect.Struct:
		for i := range v.NumField() {
			assertNoZero(t, v.Field(i), name+"."+v.Type().Field(i).Name)
		}
	case reflect.Slice:
		if v.Len() == 0 {
			t.Errorf("%s is empty after parsing a file that sets it", name)
		}
		for i := range v.Len() {
			assertNoZero(t, v.Index(i), name)
		}
	default:
		if v.IsZero() {
			t.Errorf("%s is zero after parsing a file that sets it", name)
		}
	}
}

func TestPathFrom(t *testing.T) {
	env := func(m map[string]string) func(string) string {
		return func(k string) string { return m[k] }
	}
	tests := []struct {
		name, flag string
		env        map[string]string
		want       string
	}{
		{"flag wins", "/a.toml", map[string]string{"LOCKSTEP_CONFIG": "/b.toml"}, "/a.toml"},
		{"env next", "", map[string]string{"LOCKSTEP_CONFIG": "/b.toml"}, "/b.toml"},
		{"default last", "", nil, "/etc/lockstep/lockstep.toml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := PathFrom(tt.flag, env(tt.env)); got != tt.want {
				t.Errorf("PathFrom = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	_, err := Load(filepath.Join(dir, "missing.toml"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: got %v, want fs.ErrNotExist", err)
	}
	p := filepath.Join(dir, "lockstep.toml")
	if err := os.WriteFile(p, []byte(minimal), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(p)
	if err != nil || cfg.Path != p {
		t.Fatalf("Load = %+v, %v", cfg, err)
	}
}

func TestEditDistance(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"branch", "branch", 0},
		{"brnach", "branch", 1},
		{"nmae", "name", 1},
		{"url", "uri", 1},
		{"", "abc", 3},
		{"foo", "log", 2},
	}
	for _, tt := range tests {
		if got := editDistance(tt.a, tt.b); got != tt.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestPolicy(t *testing.T) {
	base := "[repo]\nurl = \"https://h/x\"\n[[environment]]\nname = \"a\"\n"
	cfg, err := Parse("x.toml", []byte(base+`[policy]
mode = "enforce"
allow_capabilities = ["cap_net_admin", "NET_BIND_SERVICE", "ALL"]
allowed_bind_roots = ["/srv/data/", "/var/lib/../lib/app"]
`))
	if err != nil {
		t.Fatal(err)
	}
	want := Policy{
		Mode:              PolicyEnforce,
		AllowCapabilities: []string{"NET_ADMIN", "NET_BIND_SERVICE", "ALL"},
		AllowedBindRoots:  []string{"/srv/data", "/var/lib/app"},
	}
	if !reflect.DeepEqual(cfg.Policy, want) {
		t.Errorf("policy:\n got %+v\nwant %+v", cfg.Policy, want)
	}

	tests := []struct {
		name, doc, want string
	}{
		{"mode", "mode = \"strict\"\n", `x.toml:6: [policy].mode: must be "warn" (report violations, deploy anyway) or "enforce" (refuse the release), got "strict"`},
		{"bool as string", "allow_privileged = \"yes\"\n", `x.toml:6: [policy].allow_privileged: must be true or false, got string "yes"`},
		{"bool as int", "allow_host_pid = 1\n", `x.toml:6: [policy].allow_host_pid: must be true or false, got integer 1`},
		{"capability typo", "allow_capabilities = [\"NET_BIND_SERVICE\", \"NET_ADMN\"]\n", `x.toml:6: [policy].allow_capabilities: element 1: "NET_ADMN" is not a Linux capability; did you mean "NET_ADMIN"?`},
		{"capability nonsense", "allow_capabilities = [\"everything\"]\n", `x.toml:6: [policy].allow_capabilities: element 0: "everything" is not a Linux capability; use names from capabilities(7)`},
		{"capabilities not a list", "allow_capabilities = \"NET_ADMIN\"\n", `x.toml:6: [policy].allow_capabilities: must be an array of strings, got string "NET_ADMIN"`},
		{"relative root", "allowed_bind_roots = [\"/srv\", \"data\"]\n", `x.toml:6: [policy].allowed_bind_roots: element 1: must be an absolute path on this host, got "data"`},
		{"key typo", "allow_privilege = true\n", "x.toml:6: [policy].allow_privilege: unknown key `allow_privilege`; did you mean `allow_privileged`?"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("x.toml", []byte(base+"[policy]\n"+tc.doc))
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("got  %v\nwant %s", err, tc.want)
			}
		})
	}

	// Every problem of the table at once, each with its key.
	_, err = Parse("x.toml", []byte(base+"[policy]\nmode = \"x\"\nallow_devices = \"no\"\nallowed_bind_roots = [\"rel\"]\n"))
	var ce *Error
	if !errors.As(err, &ce) || len(ce.Problems) != 3 {
		t.Fatalf("want 3 problems, got %v", err)
	}
	for i, k := range []string{"[policy].mode", "[policy].allow_devices", "[policy].allowed_bind_roots"} {
		if ce.Problems[i].Key != k {
			t.Errorf("problem %d key %q, want %q", i, ce.Problems[i].Key, k)
		}
	}
}

func TestTrustKeysRefused(t *testing.T) {
	base := "[repo]\nurl = \"https://h/x\"\n"
	env := "[[environment]]\nname = \"a\"\n"
	tests := []struct{ name, doc, key, want string }{
		{"commits without keys", base + "[repo.verify]\ncommits = \"head\"\n" + env, "[repo.verify].commits", "set without trusted keys"},
		{"bad commits", base + "[repo.verify]\nssh_allowed_signers = \"/a\"\ncommits = \"tip\"\n" + env, "[repo.verify].commits", `got "tip"`},
		{"relative keyring", base + "[repo.verify]\nopenpgp_keyring = \"keys.asc\"\n" + env, "[repo.verify].openpgp_keyring", "absolute"},
		{"branch as floor", base + env + "min_commit = \"main\"\n", "[[environment]][0].min_commit", "40-hex"},
		{"short floor", base + env + "min_commit = \"9fceb02\"\n", "[[environment]][0].min_commit", "40-hex"},
		{"relative identity", base + "[secrets]\nage_identity = \"age.key\"\n" + env, "[secrets].age_identity", "absolute"},
		{"relative runtime dir", base + "[secrets]\nruntime_dir = \"run\"\n" + env, "[secrets].runtime_dir", "absolute"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("x.toml", []byte(tt.doc))
			var cerr *Error
			if !errors.As(err, &cerr) {
				t.Fatalf("want *Error, got %v", err)
			}
			for _, p := range cerr.Problems {
				if p.Key == tt.key && strings.Contains(p.Msg, tt.want) && p.Line > 0 {
					return
				}
			}
			t.Fatalf("no problem at %s containing %q with a line in:\n%v", tt.key, tt.want, err)
		})
	}
}

func TestVerifyDefaults(t *testing.T) {
	cfg, err := Parse("x.toml", []byte("[repo]\nurl = \"https://h/x\"\n[repo.verify]\nssh_allowed_signers = \"/a\"\n[[environment]]\nname = \"a\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	v := cfg.Repo.Verify
	if v.Commits != VerifyBoth || !v.Head() || !v.Pinned() {
		t.Fatalf("verify defaults: %+v head=%v pinned=%v", v, v.Head(), v.Pinned())
	}
	v.Commits = VerifyHead
	if !v.Head() || v.Pinned() {
		t.Fatalf("commits=head: head=%v pinned=%v", v.Head(), v.Pinned())
	}
	if (Verify{Commits: VerifyBoth}).Enabled() {
		t.Fatal("verification without keys must be off")
	}
}

// TestComposeStrict: [compose].strict is off unless set, and only a boolean.
func TestComposeStrict(t *testing.T) {
	base := "[repo]\nurl = \"https://h/x\"\n[[environment]]\nname = \"a\"\n"
	tests := []struct {
		name, doc, want string
		strict          bool
	}{
		{"default", "", "", false},
		{"empty table", "[compose]\n", "", false},
		{"on", "[compose]\nstrict = true\n", "", true},
		{"off", "[compose]\nstrict = false\n", "", false},
		{"string", "[compose]\nstrict = \"yes\"\n", `x.toml:6: [compose].strict: must be true or false, got string "yes"`, false},
		{"typo", "[compose]\nstrikt = true\n", "x.toml:6: [compose].strikt: unknown key `strikt`; did you mean `strict`?", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse("x.toml", []byte(base+tc.doc))
			if tc.want != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
					t.Fatalf("got  %v\nwant %s", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Compose.Strict != tc.strict {
				t.Errorf("strict = %t, want %t", cfg.Compose.Strict, tc.strict)
			}
		})
	}
}
