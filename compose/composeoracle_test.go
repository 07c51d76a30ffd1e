package compose

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lockstep-gitops/lockstep/e2e/composecli"
)

// requireComposeCLI is the argv of Docker Compose composecli.Version.
func requireComposeCLI(t *testing.T) []string {
	return composecli.Require(t, nil, "the config-hash oracle asks it for its hashes")
}

// composeEnv is the environment an operator gives `docker compose` for a
// lockstep project: the variables lockstep interpolated with (pin vars and
// the built-ins; the release's .env Compose reads itself), and nothing
// else from the test's own environment but what the CLI needs to run.
func composeEnv(opts LoadOptions, dir string) []string {
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "PWD=" + dir,
		VarCommit + "=" + opts.Commit, VarCommitShort + "=" + opts.Commit[:12], VarEnvironment + "=" + opts.Environment}
	for _, k := range []string{"DOCKER_HOST", "DOCKER_CONFIG"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	for k, v := range opts.PinVars {
		env = append(env, k+"="+v)
	}
	return env
}

// composeHashes runs `docker compose config --hash '*'` in the release dir
// as an operator would, and returns the hash of each service. config
// --hash hashes the model `up` hashes, except that `up` resolves
// network_mode/ipc/pid: service:x to the container id first (checked in
// compose/engine's TestComposeUpRecreatesNothing).
func composeHashes(t *testing.T, composeCmd []string, opts LoadOptions, files []string) map[string]string {
	t.Helper()
	args := append(slices.Clone(composeCmd[1:]), "-p", opts.Project, "--project-directory", opts.ReleaseDir)
	for _, f := range files {
		args = append(args, "-f", f)
	}
	args = append(args, "config", "--hash", "*")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, composeCmd[0], args...)
	cmd.Dir = opts.ReleaseDir
	cmd.Env = composeEnv(opts, opts.ReleaseDir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", composeCmd[0], strings.Join(args, " "), err, stderr.String())
	}
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if name, h, ok := strings.Cut(line, " "); ok {
			got[name] = h
		}
	}
	return got
}

// oracleProjects exercise the keys whose model Compose and lockstep must
// build alike: paths resolved against the release dir, env_file folded
// into environment, interpolation from .env and the pin vars, defaults
// compose-go fills in.
var oracleProjects = map[string]map[string]string{
	"web": {
		".env":            "TAG=1.25\nWORKERS=4\n",
		"web.env":         "FROM_FILE=yes\nREF=${WORKERS}\n",
		"app.toml":        "key = 1\n",
		"pw.txt":          "s3cret\n",
		"site/index.html": "hi\n",
		"compose.yaml": `x-common: &common
  restart: unless-stopped
  logging: {driver: json-file, options: {max-size: 10m, max-file: "3"}}
services:
  web:
    <<: *common
    image: registry.example/nginx:${TAG}
    ports: ["8080:80", "127.0.0.1:8443:443/tcp", {target: 9000, published: "9000", protocol: udp}]
    volumes:
      - ./site:/usr/share/nginx/html:ro
      - data:/var/cache/nginx
      - /tmp/cache
      - {type: tmpfs, target: /run, tmpfs: {size: 1048576}}
    env_file: [web.env, {path: missing.env, required: false}]
    environment: [PLAIN=1, BARE, "PIN=${PIN_VAR:-none}", "COMMIT=${LOCKSTEP_COMMIT_SHORT}"]
    configs: [{source: app, target: /etc/app.toml}]
    secrets: [pw]
    healthcheck: {test: ["CMD", "wget", "-qO-", "http://localhost/"], interval: 10s, timeout: 3s, retries: 3, start_period: 5s}
    deploy:
      replicas: 2
      resources: {limits: {cpus: "0.50", memory: 128M, pids: 100}, reservations: {memory: 64M}}
    labels: {traefik.enable: "true", team: web}
    networks:
      front: {aliases: [www, site]}
      back: {ipv4_address: 172.28.5.10}
    extra_hosts: ["host.docker.internal:host-gateway", "db.local=10.0.0.5"]
    ulimits: {nofile: {soft: 1024, hard: 4096}, nproc: 512}
    cap_add: [NET_ADMIN]
    cap_drop: [ALL]
    sysctls: {net.core.somaxconn: 1024}
    depends_on:
      db: {condition: service_healthy}
    stop_grace_period: 30s
    init: true
    read_only: true
    shm_size: 64m
    user: "101:101"
    working_dir: /srv
    command: nginx -g 'daemon off;'
  db:
    <<: *common
    image: registry.example/postgres:16
    environment: {POSTGRES_PASSWORD_FILE: /run/secrets/pw}
    secrets: [{source: pw, target: pw}]
    volumes: [{type: volume, source: data, target: /var/lib/postgresql/data, volume: {nocopy: true}}]
    healthcheck: {test: pg_isready, interval: 5s}
    networks: [back]
    tmpfs: [/var/run/postgresql]
    mem_limit: 256m
  vpn:
    image: registry.example/wireguard:1
    network_mode: service:web
    cap_add: [NET_ADMIN]
    profiles: []
configs:
  app: {file: ./app.toml}
secrets:
  pw: {file: ./pw.txt}
volumes:
  data: {labels: {backup: daily}}
networks:
  front: {}
  back:
    internal: true
    ipam: {config: [{subnet: 172.28.0.0/16}]}
`,
	},
	"defaults": {
		"compose.yaml": `services:
  app:
    image: registry.example/app
    entrypoint: ["/app"]
    dns: [1.1.1.1]
    expose: ["8000"]
    stdin_open: true
    tty: true
    pid: host
    ipc: shareable
  worker:
    image: registry.example/app
    command: ["work", "--queue", "a&b<c>"]
    scale: 3
    depends_on: [app]
    ipc: private
    restart: on-failure:5
    pull_policy: always
`,
	},
	"override": {
		"compose.yaml": `services:
  api:
    image: registry.example/api:1
    environment: {LEVEL: info}
    ports: ["3000"]
    volumes: [./conf:/conf]
`,
		"compose.override.yaml": `services:
  api:
    environment: {LEVEL: debug, EXTRA: "1"}
    labels: [com.example.owner=ops]
    volumes: [./data:/data]
`,
		"conf/a.conf": "a\n",
		"data/.keep":  "",
	},
}

// TestComposeConfigHashOracle: for the same files, variables and
// directory, Service.ConfigHash is what Docker Compose v5.6.0 computes.
func TestComposeConfigHashOracle(t *testing.T) {
	composeCmd := requireComposeCLI(t)
	for name, files := range oracleProjects {
		t.Run(name, func(t *testing.T) {
			dir := writeRelease(t, files)
			opts := testOptions(dir)
			opts.PinVars = map[string]string{"PIN_VAR": "from-pin"}
			p := load(t, opts)
			want := composeHashes(t, composeCmd, opts, p.ConfigFiles)
			if len(want) != len(p.Services) {
				t.Errorf("compose hashed %d services (%v), lockstep loaded %d", len(want), want, len(p.Services))
			}
			for _, s := range p.Services {
				if s.ConfigHash != want[s.Name] {
					t.Errorf("service %s: lockstep's config-hash %s, Compose's %s", s.Name, s.ConfigHash, want[s.Name])
				}
			}
		})
	}
}

// TestComposeConfigHashOracleDiscovery: without -f, Compose finds the
// same files lockstep does (compose.yaml plus compose.override.yaml).
func TestComposeConfigHashOracleDiscovery(t *testing.T) {
	composeCmd := requireComposeCLI(t)
	dir := writeRelease(t, oracleProjects["override"])
	opts := testOptions(dir)
	p := load(t, opts)
	want := composeHashes(t, composeCmd, opts, nil)
	if got := p.Service("api").ConfigHash; got != want["api"] {
		t.Errorf("api: lockstep's config-hash %s, Compose's %s", got, want["api"])
	}
}
