package config

import (
	"fmt"
	"net"
	"net/url"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lockstep-gitops/lockstep/gitsource"
)

// nameRE is what environment and project names may look like. It is the
// rule compose itself applies to project names (lowercase letters, digits,
// '-' and '_', starting with a letter or digit), so every environment name
// is also a valid default project name.
var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

// build turns the decoded document into a Config, filling defaults and
// recording every problem in c.
func (c *checker) build(f *file) *Config {
	cfg := &Config{}

	cfg.StateDir = c.str(topKey("state_dir"), f.StateDir, DefaultStateDir)
	if !filepath.IsAbs(cfg.StateDir) {
		c.add(topKey("state_dir"), "must be an absolute path, got %q", cfg.StateDir)
	} else {
		cfg.StateDir = filepath.Clean(cfg.StateDir)
	}

	cfg.Repo = c.repo(&f.Repo)

	cfg.Engine.Host = c.str(tableKey("engine", "host"), f.Engine.Host, "")
	if h := cfg.Engine.Host; h != "" {
		if msg := checkEngineHost(h); msg != "" {
			c.add(tableKey("engine", "host"), "%s", msg)
		}
	}

	cfg.Log.Level = c.str(tableKey("log", "level"), f.Log.Level, DefaultLogLevel)
	if !IsLogLevel(cfg.Log.Level) {
		c.add(tableKey("log", "level"), "must be one of debug, info, warn, error; got %q", cfg.Log.Level)
	}
	cfg.Log.Format = c.str(tableKey("log", "format"), f.Log.Format, DefaultLogFormat)
	if !IsLogFormat(cfg.Log.Format) {
		c.add(tableKey("log", "format"), "must be json or console, got %q", cfg.Log.Format)
	}

	cfg.Agent = Agent{
		DriftInterval: c.duration(tableKey("agent", "drift_interval"), f.Agent.DriftInterval, DefaultDriftInterval, MinDriftInterval),
		ShutdownGrace: c.duration(tableKey("agent", "shutdown_grace"), f.Agent.ShutdownGrace, DefaultShutdownGrace, MinTimeout),
	}
	cfg.Health = Health{
		Timeout: c.duration(tableKey("health", "timeout"), f.Health.Timeout, DefaultHealthTimeout, time.Second),
		Bake:    c.duration(tableKey("health", "bake"), f.Health.Bake, DefaultBake, time.Second),
	}
	cfg.Notify = c.notify(f.Notify)
	cfg.API = c.api(&f.API)
	cfg.Webhook = c.webhook(&f.Webhook)

	cfg.Policy = c.policy(&f.Policy)
	cfg.Secrets = c.secrets(&f.Secrets)

	cfg.Environments = c.environments(f.Environments)
	for i := range cfg.Environments {
		e := &cfg.Environments[i]
		if e.HealthTimeout == 0 {
			e.HealthTimeout = cfg.Health.Timeout
		}
		if e.Bake == 0 {
			e.Bake = cfg.Health.Bake
		}
	}
	return cfg
}

// notifyEvents are the events a [[notify]] target can ask for.
var notifyEvents = []string{"failure", "rollback", "recovery", "deploy"}

func (c *checker) notify(fs []fileNotify) []Notify {
	var out []Notify
	for i := range fs {
		f := &fs[i]
		k := func(name string) key {
			n := strconv.Itoa(i)
			return key{"[[notify]][" + n + "]." + name, "notify." + n + "." + name}
		}
		n := Notify{
			Kind:    c.str(k("kind"), f.Kind, ""),
			URLFile: c.str(k("url_file"), f.URLFile, ""),
			Events:  c.strings(k("events"), f.Events),
		}
		switch n.Kind {
		case "webhook", "slack":
		case "":
			c.add(k("kind"), "required: \"webhook\" (a JSON POST) or \"slack\" (an incoming webhook)")
		default:
			c.add(k("kind"), "must be \"webhook\" or \"slack\", got %q", n.Kind)
		}
		switch {
		case n.URLFile == "":
			c.add(k("url_file"), "required: the file holding the URL to post to (URLs often carry a secret, so they are not written here)")
		case !filepath.IsAbs(n.URLFile):
			c.add(k("url_file"), "must be an absolute path, got %q", n.URLFile)
		}
		if f.Events == nil {
			n.Events = []string{"failure", "rollback", "recovery"}
		}
		for j, ev := range n.Events {
			if !slices.Contains(notifyEvents, ev) {
				c.add(k("events"), "element %d: %q is not an event; use %s", j, ev, strings.Join(notifyEvents, ", "))
			}
		}
		out = append(out, n)
	}
	return out
}

func (c *checker) api(f *fileAPI) API {
	a := API{
		Socket: c.str(tableKey("api", "socket"), f.Socket, DefaultSocket),
		Listen: c.str(tableKey("api", "listen"), f.Listen, ""),
	}
	if a.Socket != "" && !filepath.IsAbs(a.Socket) {
		c.add(tableKey("api", "socket"), "must be an absolute path (or \"\" to disable the socket), got %q", a.Socket)
	}
	if a.Listen != "" {
		if msg := checkListen(a.Listen); msg != "" {
			c.add(tableKey("api", "listen"), "%s", msg)
		}
	}
	if a.Socket == "" && a.Listen == "" {
		c.add(tableKey("api", "socket"), "the local API needs a socket or [api].listen; status, history and sync talk to the agent through it")
	}
	return a
}

func (c *checker) webhook(f *fileWebhook) Webhook {
	w := Webhook{
		Listen:     c.str(tableKey("webhook", "listen"), f.Listen, ""),
		SecretFile: c.str(tableKey("webhook", "secret_file"), f.SecretFile, ""),
	}
	if w.Listen == "" {
		if w.SecretFile != "" {
			c.add(tableKey("webhook", "secret_file"), "set, but [webhook].listen is not: webhooks are off without a listen address")
		}
		return w
	}
	if msg := checkListen(w.Listen); msg != "" {
		c.add(tableKey("webhook", "listen"), "%s", msg)
	}
	switch {
	case w.SecretFile == "":
		c.add(tableKey("webhook", "secret_file"), "required with [webhook].listen: deliveries are only accepted when signed with the secret in this file")
	case !filepath.IsAbs(w.SecretFile):
		c.add(tableKey("webhook", "secret_file"), "must be an absolute path, got %q", w.SecretFile)
	}
	return w
}

// checkListen accepts host:port with a numeric port (":8080" listens on
// every address).
func checkListen(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Sprintf("must be host:port, got %q", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Sprintf("port must be a number from 0 to 65535, got %q", port)
	}
	_ = host
	return ""
}

func (c *checker) repo(f *fileRepo) Repo {
	k := func(name string) key { return tableKey("repo", name) }
	r := Repo{
		URL:                  c.str(k("url"), f.URL, ""),
		Branch:               c.str(k("branch"), f.Branch, DefaultBranch),
		PollInterval:         c.duration(k("poll_interval"), f.PollInterval, DefaultPollInterval, MinPollInterval),
		Timeout:              c.duration(k("timeout"), f.Timeout, DefaultTimeout, MinTimeout),
		TokenFile:            c.str(k("token_file"), f.TokenFile, ""),
		SSHKey:               c.str(k("ssh_key"), f.SSHKey, ""),
		SSHKeyPassphraseFile: c.str(k("ssh_key_passphrase_file"), f.SSHKeyPassphraseFile, ""),
		KnownHosts:           c.str(k("known_hosts"), f.KnownHosts, ""),
	}

	t := gitsource.TransportInvalid
	if r.URL == "" {
		c.add(k("url"), "required: the git repository to watch (https://, ssh://, user@host:path, file:// or an absolute path)")
	} else {
		var err error
		if t, err = gitsource.ParseURL(r.URL); err != nil {
			c.add(k("url"), "%s", err)
		}
	}

	if msg := checkBranch(r.Branch); msg != "" {
		c.add(k("branch"), "%s", msg)
	}

	// Credential files are read by the daemon, whose working directory is
	// not the operator's: a relative path would silently mean something
	// else under systemd.
	for _, f := range []struct {
		name, value string
	}{
		{"token_file", r.TokenFile},
		{"ssh_key", r.SSHKey},
		{"ssh_key_passphrase_file", r.SSHKeyPassphraseFile},
		{"known_hosts", r.KnownHosts},
	} {
		if f.value != "" && !filepath.IsAbs(f.value) {
			c.add(k(f.name), "must be an absolute path, got %q", f.value)
		}
	}

	// Credentials that the URL's transport would not use are most likely a
	// mistake about which URL is configured; say so rather than ignore them.
	if t != gitsource.TransportInvalid {
		if r.TokenFile != "" && t != gitsource.TransportHTTP {
			c.add(k("token_file"), "only used with https:// or http:// URLs, but [repo].url is %s", t)
		}
		if r.SSHKey != "" && t != gitsource.TransportSSH {
			c.add(k("ssh_key"), "only used with ssh URLs, but [repo].url is %s", t)
		}
		if r.KnownHosts != "" && t != gitsource.TransportSSH {
			c.add(k("known_hosts"), "only used with ssh URLs, but [repo].url is %s", t)
		}
		if t == gitsource.TransportSSH && r.KnownHosts == "" {
			c.add(k("known_hosts"), "required for ssh URLs: host keys are verified, never trusted on first use; "+
				"point it at a known_hosts file holding the git host's key (ssh-keyscan HOST > FILE, then check the fingerprint)")
		}
	}
	if r.SSHKeyPassphraseFile != "" && r.SSHKey == "" {
		c.add(k("ssh_key_passphrase_file"), "set without ssh_key: the passphrase decrypts the key named by ssh_key")
	}
	r.Verify = c.verify(&f.Verify)
	return r
}

func (c *checker) verify(f *fileVerify) Verify {
	k := func(name string) key { return tableKey("repo.verify", name) }
	v := Verify{
		Commits:           c.str(k("commits"), f.Commits, ""),
		OpenPGPKeyring:    c.str(k("openpgp_keyring"), f.OpenPGPKeyring, ""),
		SSHAllowedSigners: c.str(k("ssh_allowed_signers"), f.SSHAllowedSigners, ""),
	}
	for _, p := range []struct{ name, value string }{
		{"openpgp_keyring", v.OpenPGPKeyring},
		{"ssh_allowed_signers", v.SSHAllowedSigners},
	} {
		if p.value != "" && !filepath.IsAbs(p.value) {
			c.add(k(p.name), "must be an absolute path, got %q", p.value)
		}
	}
	switch v.Commits {
	case "":
		if v.Enabled() {
			v.Commits = VerifyBoth
		}
	case VerifyHead, VerifyPinned, VerifyBoth:
		if !v.Enabled() {
			c.add(k("commits"), "set without trusted keys: name openpgp_keyring and/or ssh_allowed_signers, or remove [repo.verify]")
		}
	default:
		c.add(k("commits"), "must be \"head\" (the branch head holding the pin), \"pinned\" (the deployed commit) or \"both\", got %q", v.Commits)
	}
	return v
}

func (c *checker) secrets(f *fileSecrets) Secrets {
	k := func(name string) key { return tableKey("secrets", name) }
	s := Secrets{
		AgeIdentity: c.str(k("age_identity"), f.AgeIdentity, ""),
		RuntimeDir:  c.str(k("runtime_dir"), f.RuntimeDir, DefaultRuntimeDir),
	}
	if s.AgeIdentity != "" && !filepath.IsAbs(s.AgeIdentity) {
		c.add(k("age_identity"), "must be an absolute path, got %q", s.AgeIdentity)
	}
	if !filepath.IsAbs(s.RuntimeDir) {
		c.add(k("runtime_dir"), "must be an absolute path, got %q", s.RuntimeDir)
	} else {
		s.RuntimeDir = filepath.Clean(s.RuntimeDir)
	}
	return s
}

// checkBranch applies the parts of git's ref name rules that a typo can
// break; the remote has the last word on whether the branch exists.
func checkBranch(b string) string {
	switch {
	case b == "":
		return "must not be empty (default " + DefaultBranch + ")"
	case strings.HasPrefix(b, "refs/"):
		return fmt.Sprintf("%q: give the branch name without refs/heads/", b)
	case strings.HasPrefix(b, "-"), strings.HasPrefix(b, "/"), strings.HasSuffix(b, "/"),
		strings.HasSuffix(b, ".lock"), strings.HasSuffix(b, "."),
		strings.Contains(b, ".."), strings.Contains(b, "//"), strings.Contains(b, "@{"),
		strings.ContainsAny(b, " \t~^:?*[\\"):
		return fmt.Sprintf("%q is not a valid git branch name", b)
	}
	return ""
}

// checkEngineHost accepts the engine addresses the Docker client dials
// itself; ssh:// would need the docker CLI as a helper, which lockstep does
// not shell out to.
func checkEngineHost(h string) string {
	u, err := url.Parse(h)
	if err != nil {
		return fmt.Sprintf("%q is not an engine address: use unix:///path/to/docker.sock or tcp://host:port", h)
	}
	switch u.Scheme {
	case "unix":
		if !path.IsAbs(u.Path) {
			return fmt.Sprintf("%q: a unix:// address needs an absolute socket path (unix:///run/docker.sock)", h)
		}
		return ""
	case "tcp":
		if u.Host == "" {
			return fmt.Sprintf("%q: a tcp:// address needs host:port", h)
		}
		return ""
	}
	return fmt.Sprintf("%q is not supported: use unix:///path/to/docker.sock or tcp://host:port (empty means DOCKER_HOST, else the default socket)", h)
}

func (c *checker) environments(fs []fileEnvironment) []Environment {
	if len(fs) == 0 {
		c.problems = append(c.problems, Problem{
			Key: "[[environment]]",
			Msg: "at least one environment is required: add an [[environment]] table with a name",
		})
		return nil
	}
	envs := make([]Environment, 0, len(fs))
	names := map[string]int{}    // name -> index of its first environment
	projects := map[string]int{} // project -> index of its first environment
	for i := range fs {
		f := &fs[i]
		k := func(name string) key { return envKey(i, name) }
		e := Environment{
			Name:         c.str(k("name"), f.Name, ""),
			PinFile:      c.str(k("pin_file"), f.PinFile, ""),
			ComposeFiles: c.strings(k("compose_files"), f.ComposeFiles),
			Project:      c.str(k("project"), f.Project, ""),
			EnvFiles:     c.strings(k("env_files"), f.EnvFiles),
			MinCommit:    c.str(k("min_commit"), f.MinCommit, ""),
			// Zero means "as [health]": filled in below, once [health] is known.
			HealthTimeout: c.duration(k("health_timeout"), f.HealthTimeout, 0, time.Second),
			Bake:          c.duration(k("bake"), f.Bake, 0, time.Second),
		}

		nameOK, nameDup := false, false
		switch {
		case e.Name == "":
			c.add(k("name"), "required: every environment needs a name such as \"production\"")
		case !nameRE.MatchString(e.Name):
			c.add(k("name"), "%q is not a valid name: use lowercase letters, digits, '-' and '_', starting with a letter or digit", e.Name)
		default:
			nameOK = true
			if j, dup := names[e.Name]; dup {
				nameDup = true
				c.add(k("name"), "%q is already the name of [[environment]][%d]", e.Name, j)
			} else {
				names[e.Name] = i
			}
		}

		if e.PinFile == "" && nameOK {
			e.PinFile = "environments/" + e.Name + ".toml"
		} else if e.PinFile != "" {
			if p, msg := repoPath(e.PinFile); msg != "" {
				c.add(k("pin_file"), "%s", msg)
			} else {
				e.PinFile = p
			}
		}

		for j, cf := range e.ComposeFiles {
			if p, msg := repoPath(cf); msg != "" {
				c.add(k("compose_files"), "element %d: %s", j, msg)
			} else {
				e.ComposeFiles[j] = p
			}
		}

		projectDefaulted := e.Project == ""
		if projectDefaulted {
			e.Project = e.Name // valid whenever the name is
		} else if !nameRE.MatchString(e.Project) {
			c.add(k("project"), "%q is not a valid compose project name: use lowercase letters, digits, '-' and '_', starting with a letter or digit", e.Project)
		}
		// A project that clashes only because it defaults to a duplicate
		// name is the same mistake: report it once, at the name.
		if e.Project != "" && nameRE.MatchString(e.Project) && !(projectDefaulted && nameDup) {
			if j, dup := projects[e.Project]; dup {
				c.add(k("project"), "project %q is already used by [[environment]][%d] (%s): each environment needs its own compose project",
					e.Project, j, envs[j].Name)
			} else {
				projects[e.Project] = i
			}
		}

		// Env files live on the host, outside any release; a relative path
		// would depend on the daemon's working directory.
		for j, ef := range e.EnvFiles {
			if !filepath.IsAbs(ef) {
				c.add(k("env_files"), "element %d: must be an absolute path on this host, got %q", j, ef)
			} else {
				e.EnvFiles[j] = filepath.Clean(ef)
			}
		}
		// The floor is a commit, never a name: a branch or tag could be
		// moved by whoever the floor is meant to stop.
		if e.MinCommit != "" {
			if !commitRE.MatchString(e.MinCommit) {
				c.add(k("min_commit"), "must be a full 40-hex commit SHA (lowercase), got %q: a branch or tag name could be moved by whoever pushes", e.MinCommit)
			}
		}
		envs = append(envs, e)
	}
	return envs
}

var commitRE = regexp.MustCompile(`^[0-9a-f]{40}$`)

// repoPath checks that p names a file inside the repository and returns it
// cleaned. Paths in the repository are slash-separated on every host.
func repoPath(p string) (string, string) {
	if path.IsAbs(p) || filepath.IsAbs(p) {
		return "", fmt.Sprintf("must be a path relative to the repository root, got %q", p)
	}
	clean := path.Clean(p)
	if clean == "." || clean == ".." || strings.HasPrefix(clean, "../") || strings.Contains("/"+p+"/", "/../") {
		return "", fmt.Sprintf("must be a file inside the repository (relative, without \"..\"), got %q", p)
	}
	if strings.HasSuffix(p, "/") {
		return "", fmt.Sprintf("must name a file, not a directory, got %q", p)
	}
	return clean, ""
}

// capabilities are the Linux capabilities cap_add can name, without the
// CAP_ prefix (capabilities(7)); ALL is compose's "every one of them".
var capabilities = []string{
	"ALL",
	"AUDIT_CONTROL", "AUDIT_READ", "AUDIT_WRITE", "BLOCK_SUSPEND", "BPF", "CHECKPOINT_RESTORE",
	"CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "IPC_LOCK", "IPC_OWNER",
	"KILL", "LEASE", "LINUX_IMMUTABLE", "MAC_ADMIN", "MAC_OVERRIDE", "MKNOD", "NET_ADMIN",
	"NET_BIND_SERVICE", "NET_BROADCAST", "NET_RAW", "PERFMON", "SETFCAP", "SETGID", "SETPCAP",
	"SETUID", "SYS_ADMIN", "SYS_BOOT", "SYS_CHROOT", "SYS_MODULE", "SYS_NICE", "SYS_PACCT",
	"SYS_PTRACE", "SYS_RAWIO", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "SYSLOG", "WAKE_ALARM",
}

func (c *checker) policy(f *filePolicy) Policy {
	k := func(name string) key { return tableKey("policy", name) }
	p := Policy{
		Mode:              c.str(k("mode"), f.Mode, PolicyWarn),
		AllowPrivileged:   c.boolean(k("allow_privileged"), f.AllowPrivileged, false),
		AllowHostNetwork:  c.boolean(k("allow_host_network"), f.AllowHostNetwork, false),
		AllowHostPID:      c.boolean(k("allow_host_pid"), f.AllowHostPID, false),
		AllowHostIPC:      c.boolean(k("allow_host_ipc"), f.AllowHostIPC, false),
		AllowCapabilities: c.strings(k("allow_capabilities"), f.AllowCapabilities),
		AllowDevices:      c.boolean(k("allow_devices"), f.AllowDevices, false),
		AllowDockerSocket: c.boolean(k("allow_docker_socket"), f.AllowDockerSocket, false),
		AllowedBindRoots:  c.strings(k("allowed_bind_roots"), f.AllowedBindRoots),
	}
	if p.Mode != PolicyWarn && p.Mode != PolicyEnforce {
		c.add(k("mode"), "must be \"warn\" (report violations, deploy anyway) or \"enforce\" (refuse the release), got %q", p.Mode)
	}
	// A typo in a capability would silently allow nothing (or, worse, be
	// read later as allowing something else): names are checked.
	for i, capName := range p.AllowCapabilities {
		norm := strings.TrimPrefix(strings.ToUpper(strings.TrimSpace(capName)), "CAP_")
		if !slices.Contains(capabilities, norm) {
			msg := fmt.Sprintf("element %d: %q is not a Linux capability", i, capName)
			best, bestDist := "", 3
			for _, known := range capabilities {
				if d := editDistance(norm, known); d < bestDist {
					best, bestDist = known, d
				}
			}
			if best != "" {
				msg += fmt.Sprintf("; did you mean %q?", best)
			} else {
				msg += "; use names from capabilities(7) without CAP_, such as \"NET_BIND_SERVICE\""
			}
			c.add(k("allow_capabilities"), "%s", msg)
			continue
		}
		p.AllowCapabilities[i] = norm
	}
	// Roots are compared with host paths the engine mounts: a relative
	// one would mean nothing.
	for i, r := range p.AllowedBindRoots {
		if !filepath.IsAbs(r) {
			c.add(k("allowed_bind_roots"), "element %d: must be an absolute path on this host, got %q", i, r)
			continue
		}
		p.AllowedBindRoots[i] = filepath.Clean(r)
	}
	return p
}
