package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"github.com/lockstep-gitops/lockstep/e2e/harness"
)

// reversibleYAML is web, publishing a fixed host port on 127.0.0.1 with
// its data in a named volume, and db beside it. webExtra is appended to
// web's block.
func reversibleYAML(f *fixture, port int, rev, webExtra string) string {
	return fmt.Sprintf(`services:
  web:
    image: %[1]s
    ports: ["127.0.0.1:%[2]d:8080"]
    environment:
      DATA_DIR: /data
      REV: %[3]q
    volumes:
      - webdata:/data
    healthcheck:
      test: ["CMD", "/app", "healthcheck"]
      interval: 1s
      timeout: 3s
      retries: 30
%[4]s  db:
    image: %[5]s
    environment:
      DATA_DIR: /data
    volumes:
      - dbdata:/data
volumes:
  webdata: {}
  dbdata: {}
`, f.images["web:a"], port, rev, webExtra, f.images["db:a"])
}

// freeTCPPort is a TCP port on 127.0.0.1 that nothing listens on right
// now (freePort's, as a number).
func freeTCPPort(t *testing.T) int {
	t.Helper()
	_, port, err := net.SplitHostPort(freePort(t))
	must(t, err)
	n, err := strconv.Atoi(port)
	must(t, err)
	return n
}

// failedApply runs apply, which must exit 1, and returns its output.
func (f *fixture) failedApply() string {
	f.t.Helper()
	r := f.lockstep("apply", "e2e")
	if r.code != 1 {
		f.t.Fatalf("apply: want exit 1, got %s", r)
	}
	return r.stdout + r.stderr
}

func assertSays(t *testing.T, out string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(out, w) {
			t.Errorf("output does not say %q:\n%s", w, out)
		}
	}
}

func postData(t *testing.T, port int, data string) {
	t.Helper()
	resp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d/data", port), "text/plain", strings.NewReader(data))
	must(t, err)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("POST /data: %s", resp.Status)
	}
}

// A recreate whose new container cannot start (here: an entrypoint the
// image does not have, which the engine reports only at start) puts the
// old container back: same ID, under its name, running and serving, with
// its volume data; nothing else is touched; the next release converges.
func TestRecreateFailurePutsOldContainerBack(t *testing.T) {
	f := newFixture(t)
	cli := harness.RequireDocker(t)
	port := freeTCPPort(t)
	f.release("web 1", map[string]string{"compose.yaml": reversibleYAML(f, port, "1", "")})
	f.apply()
	postData(t, port, "kept\n")
	before := world(t, cli, f.project)
	bootLog := volumeFile(t, cli, f.project+"_webdata", "boot.log")

	f.release("web 2, broken entrypoint", map[string]string{
		"compose.yaml": reversibleYAML(f, port, "2", "    entrypoint: [\"/nonexistent\"]\n"),
	})
	out := f.failedApply()
	web := before["web"].Name
	assertSays(t, out,
		"recreate web ("+web+"): new container could not start: start container ",
		"/nonexistent",
		"; the previous container is running again",
		"put back and running again: "+web)

	after := world(t, cli, f.project)
	if len(after) != 2 {
		t.Fatalf("containers after the failed recreate: %v", ids(after))
	}
	if a, b := after["web"], before["web"]; a.ID != b.ID || a.Name != b.Name || a.State != "running" || a.Labels["lockstep.commit"] != b.Labels["lockstep.commit"] {
		t.Fatalf("web is not the previous container running again: before %s %s, after %s %s %s", b.ID[:12], b.Name, a.ID[:12], a.Name, a.State)
	}
	sameWorld(t, map[string]box{"db": before["db"]}, map[string]box{"db": after["db"]})
	if got := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/data", port)); got != "kept" {
		t.Errorf("web serves data %q after the restore, want kept", got)
	}
	if got := volumeFile(t, cli, f.project+"_webdata", "boot.log"); got != bootLog+"started a\n" {
		t.Errorf("boot log %q: want the old container started once more, the new one never", got)
	}

	f.release("web 2, fixed", map[string]string{"compose.yaml": reversibleYAML(f, port, "2", "")})
	f.apply()
	fixed := world(t, cli, f.project)
	if fixed["web"].ID == before["web"].ID || fixed["web"].State != "running" || fixed["web"].Name != web {
		t.Fatalf("the fixed release did not replace web: %v", ids(fixed))
	}
	sameWorld(t, map[string]box{"db": before["db"]}, map[string]box{"db": fixed["db"]})
	if got := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/data", port)); got != "kept" {
		t.Errorf("web serves data %q after the fixed release, want kept", got)
	}
	if p := f.plan(); !p.Empty() {
		t.Errorf("plan after converging: %+v", p.Actions)
	}
}

// A release whose web publishes a host port something else holds is
// refused before anything is stopped, pass after pass, whether a process
// or a container outside the project holds it; once the port is free, the
// next apply converges.
func TestTakenHostPortIsRefusedUpFront(t *testing.T) {
	f := newFixture(t)
	cli := harness.RequireDocker(t)
	f.release("web 1", map[string]string{"compose.yaml": reversibleYAML(f, freeTCPPort(t), "1", "")})
	f.apply()
	before := world(t, cli, f.project)

	l, err := net.Listen("tcp4", "127.0.0.1:0")
	must(t, err)
	defer l.Close()
	taken := l.Addr().(*net.TCPAddr).Port
	f.release("web 2 on a taken port", map[string]string{"compose.yaml": reversibleYAML(f, taken, "2", "")})
	for pass := 1; pass <= 2; pass++ {
		out := f.failedApply()
		assertSays(t, out, fmt.Sprintf("web: host port 127.0.0.1:%d/tcp is already in use by a process on this host (not a container)", taken),
			"nothing was stopped")
		sameWorld(t, before, world(t, cli, f.project))
	}

	// The process goes; a container of no compose project takes the port.
	l.Close()
	squatter := startSquatter(t, cli, f.project+"-squatter", f.images["web:a"], taken)
	out := f.failedApply()
	assertSays(t, out, fmt.Sprintf("web: host port 127.0.0.1:%d/tcp is already in use by container %s", taken, f.project+"-squatter"))
	sameWorld(t, before, world(t, cli, f.project))

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err = cli.ContainerRemove(ctx, squatter, client.ContainerRemoveOptions{Force: true})
	must(t, err)
	f.apply()
	after := world(t, cli, f.project)
	if after["web"].ID == before["web"].ID || after["web"].State != "running" {
		t.Fatalf("web was not replaced once the port was free: %v", ids(after))
	}
	sameWorld(t, map[string]box{"db": before["db"]}, map[string]box{"db": after["db"]})
	if got := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/version", taken)); got != "a" {
		t.Errorf("web on the freed port answers %q", got)
	}
	if p := f.plan(); !p.Empty() {
		t.Errorf("plan after converging: %+v", p.Actions)
	}
}

// startSquatter runs image outside any compose project, publishing
// 127.0.0.1:port, and removes it when the test ends.
func startSquatter(t *testing.T, cli *client.Client, name, image string, port int) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	target, _ := network.PortFrom(8080, network.TCP)
	res, err := cli.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name:   name,
		Config: &container.Config{Image: image, ExposedPorts: network.PortSet{target: {}}},
		HostConfig: &container.HostConfig{PortBindings: network.PortMap{
			target: {{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: fmt.Sprint(port)}},
		}},
	})
	must(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := cli.ContainerRemove(ctx, res.ID, client.ContainerRemoveOptions{Force: true}); err != nil && !strings.Contains(err.Error(), "No such container") {
			t.Errorf("remove %s: %v", name, err)
		}
	})
	_, err = cli.ContainerStart(ctx, res.ID, client.ContainerStartOptions{})
	must(t, err)
	return res.ID
}
