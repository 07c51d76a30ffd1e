package compose

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/moby/moby/api/types/mount"
)

// Policy modes ([policy].mode).
const (
	// PolicyWarn reports violations (log, plan, validate) and deploys anyway.
	PolicyWarn = "warn"
	// PolicyEnforce refuses a release with any violation before anything
	// on the host is touched.
	PolicyEnforce = "enforce"
)

// dockerSockets are the host paths of the engine's API socket. A container
// that can reach it controls the engine, and so the host, whatever else the
// policy says.
var dockerSockets = []string{"/var/run/docker.sock", "/run/docker.sock"}

// Policy is the operator's deploy policy: which settings of the loaded
// compose model that grant a container power over the host are accepted.
// Whoever can merge to the repository can otherwise run anything as root
// on the host; the policy narrows that to what the operator allowed. The
// zero value allows none of it (and warns).
type Policy struct {
	Mode              string   // PolicyWarn (default, also for "") or PolicyEnforce
	AllowPrivileged   bool     // privileged: true
	AllowHostNetwork  bool     // network_mode: host
	AllowHostPID      bool     // pid: host
	AllowHostIPC      bool     // ipc: host
	AllowCapabilities []string // cap_add entries allowed ("NET_BIND_SERVICE"); ALL only when listed itself
	AllowDevices      bool     // devices, device_cgroup_rules
	AllowDockerSocket bool     // a bind of the Docker socket itself; a bind of a directory holding it stays refused
	AllowedBindRoots  []string // absolute host paths under which binds are allowed; the release dir always is
}

// Enforced reports whether a violation refuses the release.
func (p Policy) Enforced() bool { return p.Mode == PolicyEnforce }

// Violation is one setting of one service that the policy does not allow.
type Violation struct {
	Service string // compose service name
	Setting string // compose key: privileged, network_mode, pid, ipc, cap_add, devices, volumes, configs/secrets
	Rule    string // the [policy] key that would allow it: allow_privileged, allowed_bind_roots, ...
	Detail  string // what was found and the rule's current value
}

// Error reads like `service "web": privileged: true is not allowed
// ([policy].allow_privileged = false)`: the service, the setting and the
// rule, which is what the operator needs to fix either the compose file or
// the policy.
func (v Violation) Error() string {
	return fmt.Sprintf("service %q: %s: %s", v.Service, v.Setting, v.Detail)
}

// PolicyError refuses a release in PolicyEnforce mode. It is permanent:
// the release is immutable, so checking it again fails the same way until
// the pin or the policy changes.
type PolicyError struct {
	Violations []Violation
}

func (e *PolicyError) Error() string {
	parts := make([]string, len(e.Violations))
	for i, v := range e.Violations {
		parts[i] = v.Error()
	}
	noun := "violation"
	if len(parts) != 1 {
		noun = "violations"
	}
	return fmt.Sprintf("refused by the deploy policy ([policy].mode = %q), %d %s: %s; change the compose files or allow it in [policy]",
		PolicyEnforce, len(parts), noun, strings.Join(parts, "; "))
}

// Permanent is true: see PolicyError.
func (e *PolicyError) Permanent() bool { return true }

// CheckPolicy returns every setting of p's services that pol does not
// allow, in service order, whatever pol.Mode says: the caller decides
// whether they warn or refuse. It reads the host only to resolve symlinks
// of bind sources (a bind of /srv/data/link pointing at /etc is a bind of
// /etc); a path that does not exist is judged as written. A stack
// (Project.Stack) is checked as stackViolations says.
func CheckPolicy(p *Project, pol Policy) []Violation {
	var out []Violation
	roots := bindRoots(p.ReleaseDir, pol.AllowedBindRoots)
	sockets := socketPaths()
	if p.Stack != nil {
		out = append(out, stackViolations(p.Stack, pol, roots, sockets)...)
	}
	for i := range p.Services {
		s := &p.Services[i]
		add := func(setting, rule, format string, args ...any) {
			out = append(out, Violation{Service: s.Name, Setting: setting, Rule: rule, Detail: fmt.Sprintf(format, args...)})
		}
		h := s.Host
		if h == nil {
			continue
		}
		if h.Privileged && !pol.AllowPrivileged {
			add("privileged", "allow_privileged", "true is not allowed ([policy].allow_privileged = false)")
		}
		if h.NetworkMode.IsHost() && !pol.AllowHostNetwork {
			add("network_mode", "allow_host_network", "host is not allowed ([policy].allow_host_network = false)")
		}
		if h.PidMode.IsHost() && !pol.AllowHostPID {
			add("pid", "allow_host_pid", "host is not allowed ([policy].allow_host_pid = false)")
		}
		if h.IpcMode.IsHost() && !pol.AllowHostIPC {
			add("ipc", "allow_host_ipc", "host is not allowed ([policy].allow_host_ipc = false)")
		}
		allowedCaps := map[string]bool{}
		for _, c := range pol.AllowCapabilities {
			allowedCaps[normalizeCap(c)] = true
		}
		for _, c := range h.CapAdd {
			if !allowedCaps[normalizeCap(c)] {
				add("cap_add", "allow_capabilities", "%s is not allowed ([policy].allow_capabilities = %s)", c, tomlList(pol.AllowCapabilities))
			}
		}
		if !pol.AllowDevices {
			for _, d := range h.Devices {
				add("devices", "allow_devices", "%s is not allowed ([policy].allow_devices = false)", d.PathOnHost)
			}
			for _, r := range h.DeviceCgroupRules {
				add("device_cgroup_rules", "allow_devices", "%q is not allowed ([policy].allow_devices = false)", r)
			}
		}
		for _, b := range binds(s) {
			if v, bad := checkBind(b, pol, roots, sockets); bad {
				add(b.setting, v.Rule, "%s", v.Detail)
			}
		}
	}
	return out
}

// hostBind is one host path a service mounts, as the engine will see it.
type hostBind struct {
	source, target string
	setting        string // the compose key it comes from
}

// binds lists the host paths s mounts: HostConfig.Binds entries whose
// source is a path (not a named volume), and Mounts of type bind. The
// converter puts plain volume binds in Binds, volume binds with options in
// Mounts with BindOptions, and configs/secrets file: sources in Mounts
// without BindOptions; that is how the setting is told apart.
func binds(s *Service) []hostBind {
	var out []hostBind
	for _, b := range s.Host.Binds {
		src, rest, _ := strings.Cut(b, ":")
		if !strings.HasPrefix(src, "/") {
			continue // a named volume
		}
		target, _, _ := strings.Cut(rest, ":")
		out = append(out, hostBind{source: src, target: target, setting: "volumes"})
	}
	for _, m := range s.Host.Mounts {
		if m.Type != mount.TypeBind {
			continue
		}
		setting := "volumes"
		if m.BindOptions == nil {
			setting = "configs/secrets"
		}
		out = append(out, hostBind{source: m.Source, target: m.Target, setting: setting})
	}
	return out
}

// checkBind applies the Docker socket rule, then the bind roots rule, to
// one bind: one violation per bind at most, the more precise one.
func checkBind(b hostBind, pol Policy, roots, sockets []string) (Violation, bool) {
	clean := filepath.Clean(b.source)
	forms := []string{clean}
	if real := resolve(clean); real != clean {
		forms = append(forms, real)
	}
	isSocket, holdsSocket := false, false
	for _, f := range forms {
		for _, s := range sockets {
			switch {
			case f == s:
				isSocket = true
			case within(f, s):
				holdsSocket = true
			}
		}
	}
	shown := clean
	if len(forms) > 1 {
		shown = fmt.Sprintf("%s (resolves to %s)", clean, forms[1])
	}
	switch {
	case isSocket && pol.AllowDockerSocket:
		return Violation{}, false
	case isSocket:
		return Violation{Rule: "allow_docker_socket", Detail: fmt.Sprintf(
			"bind of the Docker socket %s at %s is not allowed: it gives the container control of the engine ([policy].allow_docker_socket = false)", shown, b.target)}, true
	case holdsSocket:
		return Violation{Rule: "allow_docker_socket", Detail: fmt.Sprintf(
			"bind of %s at %s is not allowed: it holds the Docker socket, which gives the container control of the engine ([policy].allow_docker_socket allows only a bind of the socket itself)", shown, b.target)}, true
	}
	// Every form must be inside an allowed root: a symlink under an allowed
	// root that points elsewhere is a bind of elsewhere.
	for _, f := range forms {
		if !underAny(f, roots) {
			return Violation{Rule: "allowed_bind_roots", Detail: fmt.Sprintf(
				"bind of %s at %s is outside the release and every allowed root ([policy].allowed_bind_roots = %s)", shown, b.target, tomlList(pol.AllowedBindRoots))}, true
		}
	}
	return Violation{}, false
}

// bindRoots is where binds may come from: the release dir and the allowed
// roots, each as written and with symlinks resolved.
func bindRoots(releaseDir string, allowed []string) []string {
	var roots []string
	for _, r := range append([]string{releaseDir}, allowed...) {
		if r == "" || !filepath.IsAbs(r) {
			continue
		}
		c := filepath.Clean(r)
		roots = append(roots, c)
		if real := resolve(c); real != c {
			roots = append(roots, real)
		}
	}
	return roots
}

func socketPaths() []string {
	out := append([]string(nil), dockerSockets...)
	for _, s := range dockerSockets {
		if real := resolve(s); real != s {
			out = append(out, real)
		}
	}
	return out
}

func underAny(p string, roots []string) bool {
	for _, r := range roots {
		if p == r || within(r, p) {
			return true
		}
	}
	return false
}

// resolve returns the absolute, clean path p with symlinks resolved as far
// as the host has them: a missing tail is kept as written under its
// resolved parent, so /var/run/x resolves through /var/run -> /run even
// when x does not exist. It never fails: a path it cannot resolve at all
// is returned clean.
func resolve(p string) string {
	p = filepath.Clean(p)
	if real, err := filepath.EvalSymlinks(p); err == nil {
		return real
	}
	parent := filepath.Dir(p)
	if parent == p {
		return p
	}
	if _, err := os.Lstat(p); err == nil {
		// It exists but cannot be resolved (a loop, no permission): judge
		// it as written.
		return p
	}
	return filepath.Join(resolve(parent), filepath.Base(p))
}

// normalizeCap spells a capability as the engine does without its
// prefix: "cap_net_admin" and "NET_ADMIN" are the same.
func normalizeCap(c string) string {
	return strings.TrimPrefix(strings.ToUpper(strings.TrimSpace(c)), "CAP_")
}

func tomlList(list []string) string {
	q := make([]string, len(list))
	for i, s := range list {
		q[i] = strconv.Quote(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}
