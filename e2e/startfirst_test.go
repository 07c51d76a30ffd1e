package e2e

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/client"

	"github.com/lockstep-gitops/lockstep/e2e/harness"
)

// clientCounts reads the last "ok=N failed=M" line the client container
// printed.
func clientCounts(t *testing.T, cli *client.Client, id string) (ok, failed int) {
	t.Helper()
	out := clientOutput(t, cli, id)
	lines := strings.Split(out, "\n")
	if _, err := fmt.Sscanf(lines[len(lines)-1], "ok=%d failed=%d", &ok, &failed); err != nil {
		t.Fatalf("client output %q: %v", out, err)
	}
	return ok, failed
}

// clientOutput is the last lines the client container printed, trimmed.
func clientOutput(t *testing.T, cli *client.Client, id string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	logs, err := cli.ContainerLogs(ctx, id, client.ContainerLogsOptions{ShowStdout: true, Tail: "5"})
	must(t, err)
	defer logs.Close()
	var out strings.Builder
	if _, err := stdcopy.StdCopy(&out, io.Discard, logs); err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out.String())
}

// updateUnderLoad deploys api (no published port) with order, then updates
// it while a client calls it through the service name, and returns how
// many of the client's requests failed during the update.
func updateUnderLoad(t *testing.T, order string) (failed, total int) {
	f := newFixture(t)
	cli := harness.RequireDocker(t)
	stackYAML := func(rev string) string {
		return fmt.Sprintf(`services:
  api:
    image: %[1]s
    environment:
      REV: %[2]q
    healthcheck:
      test: ["CMD", "/app", "healthcheck"]
      interval: 1s
      timeout: 3s
      retries: 30
    deploy:
      update_config:
        order: %[3]s
    networks: [backend]
  client:
    image: %[1]s
    command: ["loop", "http://api:8080/healthz", "20ms"]
    depends_on:
      api:
        condition: service_healthy
    networks: [backend]
networks:
  backend: {}
`, f.images["worker:a"], rev, order)
	}
	f.release("api 1", map[string]string{"compose.yaml": stackYAML("1")})
	f.apply()
	clientID := world(t, cli, f.project)["client"].ID
	time.Sleep(2 * time.Second)
	ok0, failed0 := clientCounts(t, cli, clientID)
	f.release("api 2", map[string]string{"compose.yaml": stackYAML("2")})
	r := f.apply()
	if !strings.Contains(r.stdout, order) {
		t.Fatalf("the plan does not show the update order %s:\n%s", order, r.stdout)
	}
	time.Sleep(2 * time.Second)
	w := world(t, cli, f.project)
	if w["client"].ID != clientID {
		t.Fatalf("the client was recreated")
	}
	ok1, failed1 := clientCounts(t, cli, clientID)
	return failed1 - failed0, (ok1 - ok0) + (failed1 - failed0)
}

// TestStartFirstZeroDowntime: updating a service without published ports
// with start-first loses no request of a client calling it by service name;
// the same update stop-first shows the gap, so the test can fail.
func TestStartFirstZeroDowntime(t *testing.T) {
	var startFirst, stopFirst, n1, n2 int
	t.Run("start-first", func(t *testing.T) { startFirst, n1 = updateUnderLoad(t, "start-first") })
	t.Run("stop-first", func(t *testing.T) { stopFirst, n2 = updateUnderLoad(t, "stop-first") })
	t.Logf("failed requests during the update: start-first %d of %d, stop-first %d of %d", startFirst, n1, stopFirst, n2)
	if startFirst != 0 {
		t.Errorf("start-first lost %d requests", startFirst)
	}
	if stopFirst == 0 {
		t.Errorf("stop-first lost no request: the test cannot tell the two apart")
	}
}
