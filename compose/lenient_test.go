package compose

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestComposeLeniency holds each key Docker Compose ignores on a single host
// to its decision: ignored with a warning naming the file, line, service and
// key by default, refused with [compose].strict.
func TestComposeLeniency(t *testing.T) {
	tests := []struct {
		name, services, key, want string
	}{
		{"build beside image", "  web:\n    image: x:1\n    build: .\n", "build", "pulls x:1"},
		{"develop", "  web:\n    image: x:1\n    develop:\n      watch:\n        - path: .\n          action: sync\n          target: /app\n", "develop", "docker compose watch"},
		{"links by service name", "  web:\n    image: x:1\n    links: [db, \"db:db\"]\n  db:\n    image: y:1\n", "links", "share a network"},
		{"cpu_count", "  web:\n    image: x:1\n    cpu_count: 2\n", "cpu_count", "Windows-only"},
		{"cpu_percent", "  web:\n    image: x:1\n    cpu_percent: 50\n", "cpu_percent", "Windows-only"},
		{"credential_spec", "  web:\n    image: x:1\n    credential_spec:\n      file: my.json\n", "credential_spec", "Windows-only"},
		{"isolation default", "  web:\n    image: x:1\n    isolation: default\n", "isolation", "only isolation the Linux engine has"},
		{"deploy labels", "  web:\n    image: x:1\n    deploy:\n      labels: [APP=VOTING]\n", "deploy.labels", "Swarm setting"},
		{"placement", "  web:\n    image: x:1\n    deploy:\n      placement:\n        constraints: [node.role == manager]\n", "deploy.placement", "Swarm setting"},
		{"placement max_replicas_per_node", "  web:\n    image: x:1\n    deploy:\n      placement:\n        max_replicas_per_node: 1\n", "deploy.placement", "Swarm setting"},
		{"rollback_config", "  web:\n    image: x:1\n    deploy:\n      rollback_config:\n        parallelism: 1\n", "deploy.rollback_config", "Swarm setting"},
		{"endpoint_mode", "  web:\n    image: x:1\n    deploy:\n      endpoint_mode: dnsrr\n", "deploy.endpoint_mode", "Swarm setting"},
		{"update_config parallelism", "  web:\n    image: x:1\n    deploy:\n      update_config:\n        parallelism: 2\n        delay: 10s\n", "deploy.update_config", "honours only order"},
		{"update_config failure_action", "  web:\n    image: x:1\n    deploy:\n      update_config:\n        failure_action: rollback\n", "deploy.update_config", "honours only order"},
		{"restart_policy delay and window", "  web:\n    image: x:1\n    deploy:\n      restart_policy:\n        condition: on-failure\n        delay: 10s\n        window: 120s\n", "deploy.restart_policy", "delay and window"},
		{"cpu reservation", "  web:\n    image: x:1\n    deploy:\n      resources:\n        reservations:\n          cpus: \"0.5\"\n", "deploy.resources.reservations", "scheduling hint"},
		{"generic_resources", "  web:\n    image: x:1\n    deploy:\n      resources:\n        reservations:\n          generic_resources:\n            - discrete_resource_spec:\n                kind: ssd\n                value: 1\n", "deploy.resources.reservations.generic_resources", "Swarm setting"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeRelease(t, map[string]string{"compose.yaml": "services:\n" + tt.services})

			p := load(t, testOptions(dir))
			if len(p.Warnings) != 1 {
				t.Fatalf("strict off: warnings = %v, want one for %s", p.Warnings, tt.key)
			}
			w := p.Warnings[0]
			if w.Service != "web" || w.Key != tt.key || w.File != "compose.yaml" || w.Line == 0 {
				t.Errorf("warning names %s:%d service %q key %q, want compose.yaml, a line, web, %s", w.File, w.Line, w.Service, w.Key, tt.key)
			}
			assertContains(t, w.String(), "compose.yaml:", `service "web"`, tt.key+": ignored: ", tt.want)

			opts := testOptions(dir)
			opts.Strict = true
			le := loadErr(t, opts)
			if le.Service != "web" || le.Key != tt.key || le.File != "compose.yaml" || le.Line == 0 {
				t.Errorf("strict: error names %s:%d service %q key %q, want compose.yaml, a line, web, %s", le.File, le.Line, le.Service, le.Key, tt.key)
			}
			assertContains(t, le.Error(), tt.want, "[compose].strict = true refuses it")
		})
	}
}

// TestComposeLeniencyKeepsWhatIsHonoured: ignoring a Swarm part of deploy:
// keeps the parts lockstep honours (order, replicas, restart condition,
// memory).
func TestComposeLeniencyKeepsWhatIsHonoured(t *testing.T) {
	dir := writeRelease(t, map[string]string{"compose.yaml": `services:
  web:
    image: x:1
    deploy:
      replicas: 2
      placement:
        constraints: [node.role == manager]
      update_config:
        parallelism: 1
        order: start-first
      restart_policy:
        condition: on-failure
        max_attempts: 3
        delay: 5s
      resources:
        limits:
          memory: 64M
        reservations:
          cpus: "0.25"
          memory: 32M
`})
	p := load(t, testOptions(dir))
	s := p.Services[0]
	if s.Replicas != 2 || s.UpdateOrder != StartFirst {
		t.Errorf("replicas %d order %s, want 2 and start-first", s.Replicas, s.UpdateOrder)
	}
	if rp := s.Host.RestartPolicy; rp.Name != "on-failure" || rp.MaximumRetryCount != 3 {
		t.Errorf("restart policy %+v, want on-failure:3", rp)
	}
	if s.Host.Memory != 64<<20 || s.Host.MemoryReservation != 32<<20 {
		t.Errorf("memory %d reservation %d", s.Host.Memory, s.Host.MemoryReservation)
	}
	var keys []string
	for _, w := range p.Warnings {
		keys = append(keys, w.Key)
	}
	if got := strings.Join(keys, ","); got != "deploy.placement,deploy.restart_policy,deploy.update_config,deploy.resources.reservations" {
		t.Errorf("warned keys %s", got)
	}
}

// TestComposeRefusalsWhateverStrict: keys Docker Compose honours (so
// ignoring them would run something else than Compose runs) or refuses on
// Linux itself stay refused with strict off too.
func TestComposeRefusalsWhateverStrict(t *testing.T) {
	tests := []struct {
		name, services, key, want string
	}{
		{"build without image", "  web:\n    build: .\n", "build", "does not build"},
		{"links with another alias", "  web:\n    image: x:1\n    links: [\"db:database\"]\n  db:\n    image: y:1\n", "links", "legacy linking"},
		{"links across networks", "  web:\n    image: x:1\n    networks: [a]\n    links: [db]\n  db:\n    image: y:1\n    networks: [b]\nnetworks:\n  a: {}\n  b: {}\n", "links", "legacy linking"},
		{"gpu reservation", "  web:\n    image: x:1\n    deploy:\n      resources:\n        reservations:\n          devices:\n            - capabilities: [gpu]\n", "deploy.resources.reservations.devices", "GPUs"},
		{"global with replicas", "  web:\n    image: x:1\n    deploy:\n      mode: global\n      replicas: 2\n", "deploy.replicas", "mode: global"},
		{"job mode", "  web:\n    image: x:1\n    deploy:\n      mode: replicated-job\n", "deploy.mode", "jobs run to completion"},
		{"foreign platform", "  web:\n    image: x:1\n    platform: linux/s390x\n", "platform", "not this host's platform (linux/amd64)"},
		{"isolation hyperv", "  web:\n    image: x:1\n    isolation: hyperv\n", "isolation", "Windows-only"},
		{"volumes_from", "  web:\n    image: x:1\n    volumes_from: [db]\n  db:\n    image: y:1\n", "volumes_from", "named volume"},
	}
	for _, tt := range tests {
		for _, strict := range []bool{false, true} {
			t.Run(tt.name, func(t *testing.T) {
				dir := writeRelease(t, map[string]string{"compose.yaml": "services:\n" + tt.services})
				opts := testOptions(dir)
				opts.Strict, opts.HostPlatform = strict, "linux/amd64"
				le := loadErr(t, opts)
				if le.Service != "web" || le.Key != tt.key || le.File != "compose.yaml" || le.Line == 0 {
					t.Errorf("strict %t: error names %s:%d service %q key %q, want compose.yaml, a line, web, %s", strict, le.File, le.Line, le.Service, le.Key, tt.key)
				}
				assertContains(t, le.Error(), tt.want)
			})
		}
	}
}

// TestHandledWhateverStrict: keys lockstep honours exactly on one host are
// accepted without a warning, strict or not.
func TestHandledWhateverStrict(t *testing.T) {
	tests := []struct {
		name, services, host string
		replicas             int
	}{
		{"mode global is one per host", "  web:\n    image: x:1\n    deploy:\n      mode: global\n", "linux/amd64", 1},
		{"platform of the host", "  web:\n    image: x:1\n    platform: linux/amd64\n", "linux/amd64", 1},
		{"platform alias", "  web:\n    image: x:1\n    platform: linux/x86_64\n", "linux/amd64", 1},
		{"arm64 variant", "  web:\n    image: x:1\n    platform: linux/arm64/v8\n", "linux/arm64", 1},
		{"aarch64", "  web:\n    image: x:1\n    platform: linux/aarch64\n", "linux/arm64", 1},
	}
	for _, tt := range tests {
		for _, strict := range []bool{false, true} {
			t.Run(tt.name, func(t *testing.T) {
				dir := writeRelease(t, map[string]string{"compose.yaml": "services:\n" + tt.services})
				opts := testOptions(dir)
				opts.Strict, opts.HostPlatform = strict, tt.host
				p := load(t, opts)
				if len(p.Warnings) != 0 || p.Services[0].Replicas != tt.replicas {
					t.Errorf("strict %t: warnings %v replicas %d, want none and %d", strict, p.Warnings, p.Services[0].Replicas, tt.replicas)
				}
			})
		}
	}
}

// TestDefaultPlatformFromEnv: Docker Compose pulls and creates services
// without platform: for DOCKER_DEFAULT_PLATFORM of the project environment
// (the release's .env here); lockstep judges it like platform:.
func TestDefaultPlatformFromEnv(t *testing.T) {
	files := map[string]string{".env": "DOCKER_DEFAULT_PLATFORM=linux/arm64\n", "compose.yaml": "services:\n  web:\n    image: x:1\n"}
	opts := testOptions(writeRelease(t, files))
	opts.HostPlatform = "linux/amd64"
	le := loadErr(t, opts)
	if le.Service != "web" || le.Key != "platform" {
		t.Errorf("error names service %q key %q: %v", le.Service, le.Key, le)
	}
	assertContains(t, le.Error(), "DOCKER_DEFAULT_PLATFORM=linux/arm64", "linux/amd64")

	opts.HostPlatform = "linux/arm64"
	load(t, opts)
}

// TestHostEnvFile: an env_file outside the release is read only from under
// [policy].allowed_bind_roots (LoadOptions.HostFileRoots), as a regular
// file, whether the path is written absolute or built by interpolation.
func TestHostEnvFile(t *testing.T) {
	root := t.TempDir()
	secret := filepath.Join(root, "app.env")
	if err := os.WriteFile(secret, []byte("TOKEN=s3cr3t-value\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	outside := filepath.Join(t.TempDir(), "other.env")
	if err := os.WriteFile(outside, []byte("X=1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(root, "link.env")
	if err := os.Symlink(outside, link); err != nil {
		t.Fatal(err)
	}
	compose := func(envFile string) map[string]string {
		return map[string]string{"compose.yaml": "services:\n  web:\n    image: x:1\n    env_file: " + envFile + "\n"}
	}

	opts := testOptions(writeRelease(t, compose(secret)))
	opts.HostFileRoots = []string{root}
	p := load(t, opts)
	if env := strings.Join(p.Services[0].Config.Env, " "); env != "TOKEN=s3cr3t-value" {
		t.Errorf("Env = %q", env)
	}
	if len(p.Services[0].Files) != 0 || len(p.Warnings) != 0 {
		t.Errorf("host env file recorded as a repository file %v or warned %v", p.Services[0].Files, p.Warnings)
	}

	opts = testOptions(writeRelease(t, compose("\n      - path: "+filepath.Join(root, "missing.env")+"\n        required: false")))
	opts.HostFileRoots = []string{root}
	load(t, opts)

	refused := []struct {
		name, envFile, want string
		vars                map[string]string
	}{
		{"no roots", secret, "allowed_bind_roots = []", nil},
		{"outside the roots", outside, "host path", nil},
		{"symlink out of the roots", link, "host path", nil},
		{"interpolated path outside", "${DIR}/other.env", "host path", map[string]string{"DIR": filepath.Dir(outside)}},
		{"missing", filepath.Join(root, "missing.env"), "cannot be read", nil},
		{"directory", root, "not a regular file", nil},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			opts := testOptions(writeRelease(t, compose(tt.envFile)))
			if tt.name != "no roots" {
				opts.HostFileRoots = []string{root}
			}
			if tt.vars != nil {
				opts.PinVars = tt.vars
			}
			le := loadErr(t, opts)
			if le.Service != "web" || le.Key != "env_file" || le.File != "compose.yaml" {
				t.Errorf("error names %s service %q key %q: %v", le.File, le.Service, le.Key, le)
			}
			assertContains(t, le.Error(), tt.want)
		})
	}
}
