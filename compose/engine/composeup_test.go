package engine

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/moby/moby/client"

	"github.com/lockstep-gitops/lockstep/compose"
	"github.com/lockstep-gitops/lockstep/e2e/composecli"
	"github.com/lockstep-gitops/lockstep/e2e/harness"
)

// requireComposeCLI is the argv of Docker Compose composecli.Version.
func requireComposeCLI(t *testing.T) []string {
	return composecli.Require(t, nil, "the test runs `docker compose up` on what lockstep deployed")
}

// upCompose is a project using the keys whose hash Compose computes from
// more than the compose file: release paths (binds, env_file, configs),
// a network_mode: service: reference (resolved to a container id), a
// named volume and a network with a static address (their own hashes).
const upCompose = `services:
  web:
    image: %[1]s
    ports: ["127.0.0.1::8080"]
    volumes:
      - ./site:/site:ro
      - data:/data
      - /scratch
      - {type: tmpfs, target: /run/app}
    env_file: [web.env]
    environment: {PORT: "8080", TAG: "${TAG}"}
    configs: [{source: app, target: /etc/app.toml}]
    healthcheck: {test: ["CMD", "/app", "healthcheck"], interval: 1s, timeout: 2s, retries: 30}
    deploy: {resources: {limits: {memory: 64M}}}
    labels: {team: web}
    networks:
      back: {aliases: [www], ipv4_address: %[2]s.10}
    extra_hosts: ["db.local=10.0.0.5"]
    logging: {driver: json-file, options: {max-size: 1m}}
    ulimits: {nofile: {soft: 1024, hard: 2048}}
  sidecar:
    image: %[1]s
    command: ["loop", "http://127.0.0.1:8080/", "1s"]
    network_mode: service:web
    depends_on: [web]
configs:
  app: {file: ./app.toml}
volumes:
  data: {labels: {backup: daily}}
networks:
  back:
    ipam: {config: [{subnet: %[2]s.0/24}]}
`

// TestComposeUpRecreatesNothing deploys a project the way lockstep's apply
// does, then runs `docker compose up -d` in the release dir with the same
// project name and variables, as an operator would: Compose must find every
// container, network and volume up to date (issue 11).
func TestComposeUpRecreatesNothing(t *testing.T) {
	composeCmd := requireComposeCLI(t)
	f := newFixture(t, "hashup")
	ctx := testContext(t)
	ref := harness.PushTestApp(t, f.reg, "hashup", "v1", harness.ImageOptions{})

	// A /24 of its own on the shared engine, from the project's random suffix.
	n, _ := strconv.ParseUint(f.project[len(f.project)-4:], 16, 16)
	subnet := fmt.Sprintf("10.%d.%d", 200+n%50, n%256)
	dir := t.TempDir()
	for name, content := range map[string]string{
		"compose.yaml":    fmt.Sprintf(upCompose, ref, subnet),
		".env":            "TAG=v1\n",
		"web.env":         "FROM_FILE=yes\n",
		"app.toml":        "key = 1\n",
		"site/index.html": "hi\n",
	} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	opts := compose.LoadOptions{ReleaseDir: dir, Project: f.project, Environment: "test",
		Commit: strings.Repeat("c0ffee", 6) + "c0ff", Version: "0.1.0-test"}
	p, err := compose.Load(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	ids := deployLikeApply(t, ctx, f, p, ref)
	checkComposeLabels(t, ctx, f, p)

	args := append(slices.Clone(composeCmd[1:]), "-p", p.Name, "up", "-d", "--wait")
	cmd := exec.CommandContext(ctx, composeCmd[0], args...)
	cmd.Dir = dir
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "PWD=" + dir,
		compose.VarCommit + "=" + opts.Commit, compose.VarCommitShort + "=" + opts.Commit[:12], compose.VarEnvironment + "=" + opts.Environment}
	if h, ok := os.LookupEnv("DOCKER_HOST"); ok {
		cmd.Env = append(cmd.Env, "DOCKER_HOST="+h)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", composeCmd[0], strings.Join(args, " "), err, out.String())
	}
	t.Logf("docker compose up -d:\n%s", out.String())

	after := currentIDs(t, ctx, f, p)
	for k, id := range ids {
		if after[k] != id {
			t.Errorf("%s: %s before docker compose up, %s after: Compose recreated it", k, short(id), short(after[k]))
		}
	}
	for k := range after {
		if _, ok := ids[k]; !ok {
			t.Errorf("docker compose up created %s, which lockstep had not", k)
		}
	}
	if strings.Contains(out.String(), "Recreate") {
		t.Errorf("docker compose up recreated something:\n%s", out.String())
	}
}

// checkComposeLabels: networks and volumes carry the com.docker.compose.*
// labels Compose v5.6.0 puts on what it creates, no more, no fewer, with
// its config-hash.
func checkComposeLabels(t *testing.T, ctx context.Context, f *fixture, p *compose.Project) {
	t.Helper()
	composeKeys := func(labels map[string]string) []string {
		var keys []string
		for k := range labels {
			if strings.HasPrefix(k, "com.docker.compose.") {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		return keys
	}
	for _, n := range p.Networks {
		res, err := f.cli.NetworkInspect(ctx, n.Name, client.NetworkInspectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		want := []string{compose.LabelConfigHash, compose.LabelNetwork, compose.LabelProject, compose.LabelVersion}
		if got := composeKeys(res.Network.Labels); !slices.Equal(got, want) {
			t.Errorf("network %s: compose labels %v, Compose writes %v", n.Name, got, want)
		}
		if got := res.Network.Labels[compose.LabelConfigHash]; got != n.ConfigHash || got == "" {
			t.Errorf("network %s: config-hash %q, want %q", n.Name, got, n.ConfigHash)
		}
	}
	for _, v := range p.Volumes {
		res, err := f.cli.VolumeInspect(ctx, v.Name, client.VolumeInspectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		want := []string{compose.LabelConfigHash, compose.LabelProject, compose.LabelVersion, compose.LabelVolume}
		if got := composeKeys(res.Volume.Labels); !slices.Equal(got, want) {
			t.Errorf("volume %s: compose labels %v, Compose writes %v", v.Name, got, want)
		}
		if got := res.Volume.Labels[compose.LabelConfigHash]; got != v.ConfigHash || got == "" {
			t.Errorf("volume %s: config-hash %q, want %q", v.Name, got, v.ConfigHash)
		}
	}
}

// deployLikeApply creates the project's networks, volumes and containers
// with the engine adapter, in the order apply uses, starts the containers,
// and returns the ids of everything by kind and name.
func deployLikeApply(t *testing.T, ctx context.Context, f *fixture, p *compose.Project, ref string) map[string]string {
	t.Helper()
	if _, err := f.eng.Pull(ctx, ref); err != nil {
		t.Fatal(err)
	}
	for _, n := range p.Networks {
		if err := f.eng.CreateNetwork(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	for _, v := range p.Volumes {
		if err := f.eng.CreateVolume(ctx, v); err != nil {
			t.Fatal(err)
		}
	}
	for i := range p.Services {
		svc := &p.Services[i]
		for n := 1; n <= svc.Replicas; n++ {
			id, err := f.eng.CreateContainer(ctx, p, svc, n, svc.ContainerNameFor(p.Name, n), "")
			if err != nil {
				t.Fatal(err)
			}
			if err := f.eng.StartContainer(ctx, id); err != nil {
				t.Fatal(err)
			}
		}
	}
	return currentIDs(t, ctx, f, p)
}

// currentIDs lists the project's containers, networks and volumes by label.
func currentIDs(t *testing.T, ctx context.Context, f *fixture, p *compose.Project) map[string]string {
	t.Helper()
	filter := make(client.Filters).Add("label", compose.LabelProject+"="+p.Name)
	out := map[string]string{}
	cs, err := f.cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: filter})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs.Items {
		out["container "+strings.TrimPrefix(c.Names[0], "/")] = c.ID
	}
	ns, err := f.cli.NetworkList(ctx, client.NetworkListOptions{Filters: filter})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range ns.Items {
		out["network "+n.Name] = n.ID
	}
	vs, err := f.cli.VolumeList(ctx, client.VolumeListOptions{Filters: filter})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vs.Items {
		if v.Labels[compose.LabelVolume] != "" { // anonymous volumes carry no volume key
			out["volume "+v.Name] = v.CreatedAt
		}
	}
	return out
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
