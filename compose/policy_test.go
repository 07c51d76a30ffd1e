package compose

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// policyRelease loads a release whose compose.yaml has one service, app,
// with the given extra lines (indented under the service), plus extra
// top-level YAML.
func policyRelease(t *testing.T, service, topLevel string) *Project {
	t.Helper()
	dir := writeRelease(t, map[string]string{
		"compose.yaml":     "services:\n  app:\n    image: 127.0.0.1:5000/app:1\n" + service + topLevel,
		"conf/app.conf":    "x = 1\n",
		"secrets/token.db": "not really\n",
	})
	return load(t, testOptions(dir))
}

type violationWant struct{ setting, rule string }

func TestCheckPolicy(t *testing.T) {
	// Host paths the cases bind: a host secret file outside any release,
	// an allowed root holding a symlink that leads out of it.
	host := t.TempDir()
	secretFile := filepath.Join(host, "secret.txt")
	if err := os.WriteFile(secretFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	allowed := filepath.Join(host, "data")
	if err := os.MkdirAll(filepath.Join(allowed, "real"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc", filepath.Join(allowed, "etc-link")); err != nil {
		t.Fatal(err)
	}
	sockDir := filepath.Join(host, "sockdir")
	if err := os.Symlink("/run", sockDir); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		service  string // lines under services.app
		topLevel string
		policy   Policy
		want     []violationWant
	}{
		{name: "nothing special", want: nil},
		{name: "privileged", service: "    privileged: true\n",
			want: []violationWant{{"privileged", "allow_privileged"}}},
		{name: "privileged allowed", service: "    privileged: true\n", policy: Policy{AllowPrivileged: true}},
		{name: "host network", service: "    network_mode: host\n",
			want: []violationWant{{"network_mode", "allow_host_network"}}},
		{name: "host network allowed", service: "    network_mode: host\n", policy: Policy{AllowHostNetwork: true}},
		{name: "bridge network mode is fine", service: "    network_mode: bridge\n"},
		{name: "host pid", service: "    pid: host\n", want: []violationWant{{"pid", "allow_host_pid"}}},
		{name: "host pid allowed", service: "    pid: host\n", policy: Policy{AllowHostPID: true}},
		{name: "host ipc", service: "    ipc: host\n", want: []violationWant{{"ipc", "allow_host_ipc"}}},
		{name: "host ipc allowed", service: "    ipc: host\n", policy: Policy{AllowHostIPC: true}},
		{name: "shareable ipc is fine", service: "    ipc: shareable\n"},
		{name: "capability not listed", service: "    cap_add: [NET_ADMIN, NET_BIND_SERVICE]\n",
			policy: Policy{AllowCapabilities: []string{"NET_BIND_SERVICE"}},
			want:   []violationWant{{"cap_add", "allow_capabilities"}}},
		{name: "capabilities listed, any spelling", service: "    cap_add: [cap_net_admin, NET_BIND_SERVICE]\n",
			policy: Policy{AllowCapabilities: []string{"NET_ADMIN", "CAP_NET_BIND_SERVICE"}}},
		{name: "ALL is never implied by a list", service: "    cap_add: [ALL]\n",
			policy: Policy{AllowCapabilities: []string{"NET_ADMIN", "SYS_ADMIN"}},
			want:   []violationWant{{"cap_add", "allow_capabilities"}}},
		{name: "ALL when listed", service: "    cap_add: [ALL]\n", policy: Policy{AllowCapabilities: []string{"ALL"}}},
		{name: "cap_drop is always fine", service: "    cap_drop: [ALL]\n"},
		{name: "devices", service: "    devices: [\"/dev/null:/dev/xnull\"]\n",
			want: []violationWant{{"devices", "allow_devices"}}},
		{name: "device cgroup rules", service: "    device_cgroup_rules: [\"c 1:3 mr\"]\n",
			want: []violationWant{{"device_cgroup_rules", "allow_devices"}}},
		{name: "devices allowed", service: "    devices: [\"/dev/null:/dev/xnull\"]\n    device_cgroup_rules: [\"c 1:3 mr\"]\n",
			policy: Policy{AllowDevices: true}},
		{name: "docker socket", service: "    volumes: [\"/var/run/docker.sock:/var/run/docker.sock\"]\n",
			want: []violationWant{{"volumes", "allow_docker_socket"}}},
		{name: "docker socket at /run", service: "    volumes: [\"/run/docker.sock:/sock\"]\n",
			want: []violationWant{{"volumes", "allow_docker_socket"}}},
		{name: "docker socket spelled untidily", service: "    volumes: [\"/var//run/./docker.sock:/sock\"]\n",
			want: []violationWant{{"volumes", "allow_docker_socket"}}},
		{name: "docker socket allowed, without a bind root", service: "    volumes: [\"/var/run/docker.sock:/var/run/docker.sock\"]\n",
			policy: Policy{AllowDockerSocket: true}},
		{name: "docker socket via its parent dir", service: "    volumes: [\"/var/run:/host-run\"]\n",
			policy: Policy{AllowDockerSocket: true, AllowedBindRoots: []string{"/var/run"}},
			want:   []violationWant{{"volumes", "allow_docker_socket"}}},
		{name: "docker socket via the root dir", service: "    volumes: [\"/:/host:ro\"]\n",
			policy: Policy{AllowedBindRoots: []string{"/"}},
			want:   []violationWant{{"volumes", "allow_docker_socket"}}},
		{name: "docker socket via a symlink to its dir", service: "    volumes: [\"" + sockDir + ":/host-run\"]\n",
			want: []violationWant{{"volumes", "allow_docker_socket"}}},
		{name: "bind of /etc", service: "    volumes: [\"/etc:/host-etc:ro\"]\n",
			policy: Policy{AllowedBindRoots: []string{"/srv/data"}},
			want:   []violationWant{{"volumes", "allowed_bind_roots"}}},
		{name: "bind of /etc when /etc is a root", service: "    volumes: [\"/etc:/host-etc:ro\"]\n",
			policy: Policy{AllowedBindRoots: []string{"/etc"}}},
		{name: "bind under an allowed root", service: "    volumes: [\"" + allowed + "/real:/data\"]\n",
			policy: Policy{AllowedBindRoots: []string{allowed}}},
		{name: "a sibling sharing the root's prefix is outside", service: "    volumes: [\"" + allowed + "base:/data\"]\n",
			policy: Policy{AllowedBindRoots: []string{allowed}},
			want:   []violationWant{{"volumes", "allowed_bind_roots"}}},
		{name: "symlink under an allowed root leading out", service: "    volumes: [\"" + allowed + "/etc-link:/data\"]\n",
			policy: Policy{AllowedBindRoots: []string{allowed}},
			want:   []violationWant{{"volumes", "allowed_bind_roots"}}},
		{name: "long syntax bind with options", service: "    volumes:\n      - type: bind\n        source: /etc\n        target: /host-etc\n        bind:\n          create_host_path: false\n",
			want: []violationWant{{"volumes", "allowed_bind_roots"}}},
		{name: "release files are always allowed", service: "    volumes: [\"./conf/app.conf:/etc/app.conf:ro\", \"./conf:/conf\"]\n    secrets: [token]\n",
			topLevel: "secrets:\n  token:\n    file: ./secrets/token.db\n"},
		{name: "named volumes and tmpfs are not binds", service: "    volumes: [\"data:/data\", \"/cache\"]\n    tmpfs: [/tmp]\n",
			topLevel: "volumes:\n  data: {}\n"},
		{name: "host secret file outside every root", service: "    secrets: [token]\n",
			topLevel: "secrets:\n  token:\n    file: " + secretFile + "\n",
			want:     []violationWant{{"configs/secrets", "allowed_bind_roots"}}},
		{name: "host config file under an allowed root", service: "    configs: [app]\n",
			topLevel: "configs:\n  app:\n    file: " + secretFile + "\n",
			policy:   Policy{AllowedBindRoots: []string{host}}},
		{name: "every rule at once", service: "    privileged: true\n    pid: host\n    cap_add: [SYS_ADMIN]\n    volumes: [\"/etc:/e\", \"/var/run/docker.sock:/s\"]\n",
			want: []violationWant{{"privileged", "allow_privileged"}, {"pid", "allow_host_pid"}, {"cap_add", "allow_capabilities"},
				{"volumes", "allowed_bind_roots"}, {"volumes", "allow_docker_socket"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := policyRelease(t, tt.service, tt.topLevel)
			got := CheckPolicy(p, tt.policy)
			var gotWant []violationWant
			for _, v := range got {
				gotWant = append(gotWant, violationWant{v.Setting, v.Rule})
				if v.Service != "app" {
					t.Errorf("violation names service %q, want app: %v", v.Service, v)
				}
				if !strings.Contains(v.Error(), "[policy]."+v.Rule) {
					t.Errorf("violation does not name its rule [policy].%s: %v", v.Rule, v)
				}
			}
			if !reflect.DeepEqual(gotWant, tt.want) {
				t.Errorf("violations:\n got %v\nwant %v\n(%v)", gotWant, tt.want, got)
			}
		})
	}
}

// TestViolationText pins the wording operators read in logs, plans and
// errors: service, setting, what was found, the rule and its value.
func TestViolationText(t *testing.T) {
	p := policyRelease(t, "    privileged: true\n    cap_add: [SYS_ADMIN]\n    volumes: [\"/etc:/host-etc:ro\", \"/var/run:/r\"]\n", "")
	got := CheckPolicy(p, Policy{AllowCapabilities: []string{"NET_BIND_SERVICE"}, AllowedBindRoots: []string{"/srv/data"}})
	var lines []string
	for _, v := range got {
		lines = append(lines, v.Error())
	}
	runDir := "/var/run"
	if real := resolve(runDir); real != runDir {
		runDir += " (resolves to " + real + ")"
	}
	want := []string{
		`service "app": privileged: true is not allowed ([policy].allow_privileged = false)`,
		`service "app": cap_add: SYS_ADMIN is not allowed ([policy].allow_capabilities = ["NET_BIND_SERVICE"])`,
		`service "app": volumes: bind of /etc at /host-etc is outside the release and every allowed root ([policy].allowed_bind_roots = ["/srv/data"])`,
		`service "app": volumes: bind of ` + runDir + ` at /r is not allowed: it holds the Docker socket, which gives the container control of the engine ([policy].allow_docker_socket allows only a bind of the socket itself)`,
	}
	if !reflect.DeepEqual(lines, want) {
		t.Errorf("got:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}

	err := error(&PolicyError{Violations: got[:1]})
	if !strings.Contains(err.Error(), `refused by the deploy policy ([policy].mode = "enforce"), 1 violation: service "app": privileged: true`) {
		t.Errorf("PolicyError: %v", err)
	}
	var perm interface{ Permanent() bool }
	if !errors.As(err, &perm) || !perm.Permanent() {
		t.Error("PolicyError is not permanent: the agent would retry a release that can never pass")
	}
}

// TestCheckPolicyServiceOrder: violations come in the project's service
// order, each naming its own service.
func TestCheckPolicyServiceOrder(t *testing.T) {
	dir := writeRelease(t, map[string]string{"compose.yaml": `services:
  web:
    image: 127.0.0.1:5000/web:1
    privileged: true
    depends_on: [db]
  db:
    image: 127.0.0.1:5000/db:1
    network_mode: host
`})
	p := load(t, testOptions(dir))
	got := CheckPolicy(p, Policy{})
	if len(got) != 2 || got[0].Service != "db" || got[0].Setting != "network_mode" || got[1].Service != "web" || got[1].Setting != "privileged" {
		t.Fatalf("got %v", got)
	}
}

func TestResolve(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real")
	if err := os.Mkdir(real, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(real, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	realDir, _ := filepath.EvalSymlinks(dir) // t.TempDir may itself sit under a symlink
	for in, want := range map[string]string{
		filepath.Join(dir, "link"):               filepath.Join(realDir, "real"),
		filepath.Join(dir, "link", "missing"):    filepath.Join(realDir, "real", "missing"),
		filepath.Join(dir, "nope", "..", "real"): filepath.Join(realDir, "real"),
		"/no/such/path/at/all":                   "/no/such/path/at/all",
	} {
		if got := resolve(in); got != want {
			t.Errorf("resolve(%s) = %s, want %s", in, got, want)
		}
	}
}
