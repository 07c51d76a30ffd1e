package compose

import (
	"fmt"
	"strings"
	"testing"
)

// stackLoadErr loads compose as a stack and returns the *LoadError it
// must fail with.
func stackLoadErr(t *testing.T, files map[string]string, strict bool) *LoadError {
	t.Helper()
	opts := testOptions(writeRelease(t, files))
	opts.Swarm, opts.Strict = true, strict
	return loadErr(t, opts)
}

// TestStackRefusals: keys a swarm cannot honour are refused, naming the
// file and line, the service and the key, and saying what to do.
func TestStackRefusals(t *testing.T) {
	cases := []struct {
		key, yaml, want string
	}{
		{"build", "build: .", "does not build images"},
		{"privileged", "privileged: true", "cap_add"},
		{"devices", "devices: [/dev/fuse]", "host devices"},
		{"network_mode", "network_mode: host", "external: true"},
		{"container_name", "container_name: web", "container_name would be lost"},
		{"links", "links: [db]", "shared network"},
		{"external_links", "external_links: [other]", "shared network"},
		{"pid", "pid: host", "PID namespace"},
		{"ipc", "ipc: host", "IPC namespace"},
		{"cgroup_parent", "cgroup_parent: x", "cgroup parent"},
		{"userns_mode", "userns_mode: host", "user namespace"},
		{"mac_address", "mac_address: 02:42:ac:11:00:02", "addresses"},
		{"volumes_from", "volumes_from: [db]", "named volume"},
		{"scale", "scale: 2", "deploy.replicas"},
		{"gpus", "gpus: all", "GPU"},
		{"shm_size", "shm_size: 64m", "tmpfs"},
		{"mem_limit", "mem_limit: 512m", "deploy.resources"},
		{"cpus", "cpus: 0.5", "deploy.resources"},
		{"pids_limit", "pids_limit: 10", "limits.pids"},
		{"domainname", "domainname: example.com", "domain name"},
		{"security_opt", "security_opt: [label=disable]", "cannot be expressed"},
		{"ports", "ports: [\"127.0.0.1:80:80\"]", "host_ip"},
		{"ports", "ports: [{target: 80, published: \"8000-8001\"}]", "one port number"},
		{"deploy.mode", "deploy: {mode: global, replicas: 2}", "replicas can only be used"},
		{"restart", "restart: always\n    deploy: {mode: replicated-job}", "job runs to completion"},
		{"deploy.resources.limits.memory", "deploy:\n      resources:\n        limits: {memory: 1M}", "at least 4MiB"},
		{"volumes", "volumes: [/a:/data]\n    tmpfs: [/data]", "already mounted"},
		{"ports", "ports: [\"80:80\", \"80:8080\"]", "published twice"},
		{"deploy.resources.reservations.devices", "deploy:\n      resources:\n        reservations:\n          devices: [{capabilities: [gpu]}]", "device requests"},
		{"volumes", "volumes: [./html:/usr/share/nginx/html]", "exists only on the manager"},
		{"networks.default.ipv4_address", "networks:\n      default: {ipv4_address: 10.0.0.9}", "ipv4_address"},
		{"pull_policy", "pull_policy: build", "does not build"},
		{"labels", "labels: {com.docker.stack.namespace: other}", "reserved"},
		{"deploy.labels", "deploy:\n      labels: {lockstep.hash: x}", "reserved"},
		{"tmpfs", "tmpfs: [\"/run:size=64m\"]", "long volumes: syntax"},
		{"healthcheck", "healthcheck: {disable: true, test: [CMD, \"true\"]}", "at the same time"},
	}
	for _, tc := range cases {
		t.Run(tc.key+"/"+tc.yaml, func(t *testing.T) {
			compose := "services:\n  web:\n    image: nginx:1.27\n    " + tc.yaml + "\n  db:\n    image: postgres:16\n"
			if tc.key == "build" {
				compose = strings.Replace(compose, "    image: nginx:1.27\n", "", 1)
			}
			le := stackLoadErr(t, map[string]string{"compose.yaml": compose, "html/index.html": "hi"}, false)
			if le.Service != "web" || le.Key != tc.key {
				t.Errorf("error names service %q key %q, want web %s: %v", le.Service, le.Key, tc.key, le)
			}
			// The key is written on line 4 (3 without image:), or below
			// it when nested.
			first := 4
			if tc.key == "build" {
				first = 3
			}
			if le.File != "compose.yaml" || le.Line < first || le.Line > first+3 {
				t.Errorf("error at %s:%d, want compose.yaml:%d or the nested key's line below", le.File, le.Line, first)
			}
			if !strings.HasPrefix(le.Error(), fmt.Sprintf("compose.yaml:%d: service \"web\": %s: ", le.Line, tc.key)) {
				t.Errorf("error %q does not start with the file:line, the service and the key", le)
			}
			assertContains(t, le.Error(), tc.want)
		})
	}
}

// TestStackTopLevelRefusals: networks and objects a stack cannot have.
func TestStackTopLevelRefusals(t *testing.T) {
	cases := []struct {
		name, top, key, want string
	}{
		{"bad subnet", "networks:\n  default: {ipam: {config: [{subnet: 10.0.0.0/33}]}}\n", "networks.default.ipam.config", "invalid subnet"},
		{"bridge network", "networks:\n  default: {driver: bridge}\n", "networks.default.driver", "local to one node"},
		{"named config", "configs:\n  c: {file: ./c.conf, name: fixed}\n", "configs.c.name", "by their content"},
		{"templated config", "configs:\n  c: {file: ./c.conf, template_driver: golang}\n", "configs.c.template_driver", "templated"},
		{"missing config file", "configs:\n  c: {file: ./missing.conf}\n", "configs.c.file", "does not exist in the release"},
		{"host config outside roots", "configs:\n  c: {file: /etc/hostname}\n", "configs.c.file", "allowed_bind_roots"},
		{"empty config", "configs:\n  c: {file: ./empty.conf}\n", "configs.c", "empty"},
		{"unset environment", "configs:\n  c: {environment: NOPE}\n", "configs.c.environment", "not set"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			compose := "services:\n  web:\n    image: nginx:1.27\n    configs: [c]\n" + tc.top
			if !strings.Contains(tc.top, "configs:") {
				compose = "services:\n  web:\n    image: nginx:1.27\n" + tc.top
			}
			le := stackLoadErr(t, map[string]string{"compose.yaml": compose, "c.conf": "x", "empty.conf": ""}, false)
			if le.Key != tc.key || le.File != "compose.yaml" || le.Line == 0 {
				t.Errorf("error at %s:%d key %q, want compose.yaml:<line> %s: %v", le.File, le.Line, le.Key, tc.key, le)
			}
			assertContains(t, le.Error(), tc.want)
		})
	}
}

// TestStackWarnings: keys a swarm ignores harmlessly are warnings, and
// refusals with Strict.
func TestStackWarnings(t *testing.T) {
	files := map[string]string{"compose.yaml": `services:
  web:
    image: nginx:1.27
    depends_on:
      db: {condition: service_healthy}
    expose: ["80"]
    pull_policy: missing
    restart: always
    deploy:
      restart_policy: {condition: any}
  db:
    image: postgres:16
    build: ./db
`}
	p := loadStack(t, files)
	var got []string
	for _, w := range p.Warnings {
		got = append(got, fmt.Sprintf("%s:%d %s %s", w.File, w.Line, w.Service, w.Key))
	}
	eq(t, "warnings", got, []string{
		"compose.yaml:13 db build",
		"compose.yaml:8 web restart",
		"compose.yaml:4 web depends_on",
		"compose.yaml:6 web expose",
	})
	for _, w := range p.Warnings {
		if !strings.HasPrefix(w.Msg, "ignored: ") {
			t.Errorf("warning %v does not say it is ignored", w)
		}
	}
	le := stackLoadErr(t, files, true)
	assertContains(t, le.Error(), "strict", "build")
}

func TestStackServiceNameLength(t *testing.T) {
	key := strings.Repeat("w", 60)
	le := stackLoadErr(t, map[string]string{"compose.yaml": "services:\n  " + key + ":\n    image: nginx:1.27\n"}, false)
	if le.Service != key || le.Line != 2 {
		t.Errorf("error at line %d for service %q: %v", le.Line, le.Service, le)
	}
	assertContains(t, le.Error(), "63 characters")
}

func TestStackKeysCoverHandled(t *testing.T) {
	for key, rule := range serviceKeys {
		if rule != handled {
			continue
		}
		if _, ok := swarmKeys[key]; ok {
			continue
		}
		found := false
		for _, k := range stackConverted {
			found = found || k == key
		}
		if !found {
			t.Errorf("key %q is handled on a single host, but the stack conversion neither converts, refuses nor warns for it", key)
		}
	}
}
