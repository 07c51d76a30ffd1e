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

	"github.com/lockstep-gitops/lockstep/reconcile"
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
	cfg.Forge = c.forge(&f.Forge, cfg.Repo.URL)

	cfg.Policy = c.policy(&f.Policy)
	cfg.Secrets = c.secrets(&f.Secrets)
	cfg.Compose.Strict = c.boolean(tableKey("compose", "strict"), f.Compose.Strict, false)

	cfg.Environments = c.environments(f.Environments, len(f.Sets) > 0)
	for i := range cfg.Environments {
		e := &cfg.Environments[i]
		if e.HealthTimeout == 0 {
			e.HealthTimeout = cfg.Health.Timeout
		}
		if e.Bake == 0 {
			e.Bake = cfg.Health.Bake
		}
	}
	cfg.EnvironmentSets = c.environmentSets(f.Sets, cfg.Environments, cfg.Health)
	return cfg
}

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
		}
		events := c.strings(k("events"), f.Events)
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
			n.Events = slices.Clone(DefaultNotifyEvents)
		}
		for j, ev := range events {
			if !slices.Contains(reconcile.EventKinds, reconcile.EventKind(ev)) {
				c.add(k("events"), "element %d: %q is not an event; use %s", j, ev, eventNames())
				continue
			}
			n.Events = append(n.Events, reconcile.EventKind(ev))
		}
		out = append(out, n)
	}
	return out
}

// eventNames lists the event kinds a [[notify]] target can ask for.
func eventNames() string {
	names := make([]string, len(reconcile.EventKinds))
	for i, k := range reconcile.EventKinds {
		names[i] = string(k)
	}
	return strings.Join(names, ", ")
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

// environments checks every [[environment]] table, then what only the
// whole list can tell: names and compose projects must be unique, as two
// environments sharing one would deploy over each other's containers.
func (c *checker) environments(fs []fileEnvironment, haveSets bool) []Environment {
	if len(fs) == 0 && haveSets {
		return nil
	}
	if len(fs) == 0 {
		c.problems = append(c.problems, Problem{
			Key: "[[environment]]",
			Msg: "at least one environment is required: add an [[environment]] table with a name (or an [[environment_set]])",
		})
		return nil
	}
	envs := make([]Environment, 0, len(fs))
	names := map[string]int{}    // name -> index of its first environment
	projects := map[string]int{} // project -> index of its first environment
	for i := range fs {
		k := func(name string) key { return envKey(i, name) }
		e := c.environment(k, &fs[i])
		nameOK, nameDup := c.envName(k, e.Name, i, names)
		c.envRepoFiles(k, &e, nameOK)
		c.envProject(k, &e, nameDup, i, projects, envs)
		c.envHostFiles(k, &e)
		c.envMinCommit(k, e.MinCommit)
		envs = append(envs, e)
	}
	return envs
}

// environment decodes one [[environment]] table. Its checks are the env*
// methods, run by environments in the order problems are reported.
func (c *checker) environment(k func(string) key, f *fileEnvironment) Environment {
	return Environment{
		Name:         c.str(k("name"), f.Name, ""),
		PinFile:      c.str(k("pin_file"), f.PinFile, ""),
		ComposeFiles: c.strings(k("compose_files"), f.ComposeFiles),
		Project:      c.str(k("project"), f.Project, ""),
		EnvFiles:     c.strings(k("env_files"), f.EnvFiles),
		MinCommit:    c.str(k("min_commit"), f.MinCommit, ""),
		Windows:      c.windowList(k("windows"), f.Windows),
		Backend:      c.backend(k("backend"), f.Backend),
		// Zero means "as [health]": filled in by build, once [health] is known.
		HealthTimeout: c.duration(k("health_timeout"), f.HealthTimeout, 0, time.Second),
		Bake:          c.duration(k("bake"), f.Bake, 0, time.Second),
	}
}

// backend checks an environment's backend: compose (the default) or
// swarm.
func (c *checker) backend(k key, v any) string {
	b := c.str(k, v, "compose")
	if b != "compose" && b != "swarm" {
		c.add(k, "must be \"compose\" (this host's engine) or \"swarm\" (a stack on the engine's swarm); got %q", b)
		return "compose"
	}
	return b
}

// envName checks the name of environment i and records it in names. It
// says whether the name is valid (so defaults may be derived from it) and
// whether it repeats an earlier one (so the clash is reported only once).
func (c *checker) envName(k func(string) key, name string, i int, names map[string]int) (ok, dup bool) {
	switch {
	case name == "":
		c.add(k("name"), "required: every environment needs a name such as \"production\"")
	case !nameRE.MatchString(name):
		c.add(k("name"), "%q is not a valid name: use lowercase letters, digits, '-' and '_', starting with a letter or digit", name)
	default:
		if j, seen := names[name]; seen {
			c.add(k("name"), "%q is already the name of [[environment]][%d]", name, j)
			return true, true
		}
		names[name] = i
		return true, false
	}
	return false, false
}

// envRepoFiles checks the pin file and compose files, which are read from
// the release, so they must stay inside the repository. The pin file
// defaults to one named after the environment, when the name is valid.
func (c *checker) envRepoFiles(k func(string) key, e *Environment, nameOK bool) {
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
}

// envProject checks the compose project of environment i (by default its
// name) and that no earlier environment in envs uses it, recording it in
// projects.
func (c *checker) envProject(k func(string) key, e *Environment, nameDup bool, i int, projects map[string]int, envs []Environment) {
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
}

// envHostFiles checks the env files, which live on the host, outside any
// release; a relative path would depend on the daemon's working directory.
func (c *checker) envHostFiles(k func(string) key, e *Environment) {
	for j, ef := range e.EnvFiles {
		if !filepath.IsAbs(ef) {
			c.add(k("env_files"), "element %d: must be an absolute path on this host, got %q", j, ef)
		} else {
			e.EnvFiles[j] = filepath.Clean(ef)
		}
	}
}

// envMinCommit checks the floor a pinned revision must be or descend from.
// It is a commit, never a name: a branch or tag could be moved by whoever
// the floor is meant to stop.
func (c *checker) envMinCommit(k func(string) key, minCommit string) {
	if minCommit != "" && !commitRE.MatchString(minCommit) {
		c.add(k("min_commit"), "must be a full 40-hex commit SHA (lowercase), got %q: a branch or tag name could be moved by whoever pushes", minCommit)
	}
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
