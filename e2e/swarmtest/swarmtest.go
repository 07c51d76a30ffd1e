// Package swarmtest gives integration tests a real multi-node Docker swarm:
// the three managers .ci/swarm/start.sh runs, each dockerd in a network
// namespace of its own, described by the LOCKSTEP_SWARM environment
// variable that script prints. Tests reach each node's Engine API, serve
// their registry on an address every node pulls from, dial published ports
// at each node's address, and stop and start nodes.
//
// It owns test fixtures only. It must never be imported by non-test code,
// never start or remove a swarm itself (the scripts do), and never leave a
// node it stopped down after the test.
package swarmtest

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/lockstep-gitops/lockstep/e2e/harness"
)

// EnvVar names the swarm to test against:
// "hosts=unix:///run/a.sock,...;addrs=10.237.0.11,...;registry=10.237.0.1"
// (what .ci/swarm/start.sh prints), or "off" to skip swarm tests on purpose.
const EnvVar = "LOCKSTEP_SWARM"

// Swarm is the swarm a test runs against. Node i (0-based) is the dockerd
// at Hosts[i]; node 0 is the one that initialised the swarm (its leader at
// start, not necessarily later: see Leader).
type Swarm struct {
	// Hosts is each node's DOCKER_HOST.
	Hosts []string
	// RegistryAddr is an IP of the test process's network namespace that
	// every node reaches and pulls from over plain HTTP (the engines trust
	// its /24 as insecure registries): StartRegistry listens there.
	RegistryAddr string

	addrs []string
	// Each test has its own Swarm (one Require per test, not in both a test
	// and its subtests: a subtest's StopNode would wait for its parent's
	// shared lock), so these need no mutex.
	lock          *os.File // shared, or exclusive once the test stopped a node
	exclusiveHeld bool
	stopped       map[int]bool // nodes this test stopped and did not start again
}

// Require returns the swarm LOCKSTEP_SWARM describes, every node answering.
// Without LOCKSTEP_SWARM the test is skipped loudly, unless CI=true, where
// that is a failure (CI must never go green by skipping); LOCKSTEP_SWARM=off
// skips it on purpose, CI or not (a run where the test process cannot reach
// the nodes' network). A swarm that is configured but does not answer is a
// failure.
//
// Tests that share the swarm run concurrently (other packages' tests too);
// Require holds a shared lock on it until the test ends, and StopNode waits
// for the others to end first.
func Require(t testing.TB) *Swarm {
	t.Helper()
	v := os.Getenv(EnvVar)
	switch {
	case v == "off":
		t.Skip("SKIPPED LOUDLY: " + EnvVar + "=off: this test needs the multi-node swarm of .ci/swarm/start.sh")
	case v == "":
		msg := "NO SWARM: this integration test needs a real three-node swarm; start one with `bash .ci/swarm/start.sh` (root) and export the " + EnvVar + "=... line it prints"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg + "; CI=true makes this a failure (" + EnvVar + "=off skips it on purpose)")
		}
		t.Skip("SKIPPED LOUDLY: " + msg + "; set CI=true to make this a failure")
	}
	s, err := Parse(v)
	if err != nil {
		t.Fatal(err)
	}
	s.lock = lockSwarm(t, syscall.LOCK_SH)
	for i := range s.Hosts {
		s.Client(t, i) // pings it
	}
	return s
}

// Parse reads a LOCKSTEP_SWARM value.
func Parse(v string) (*Swarm, error) {
	s := &Swarm{}
	for _, part := range strings.Split(v, ";") {
		key, val, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("%s=%q: %q is not key=value", EnvVar, v, part)
		}
		switch key {
		case "hosts":
			s.Hosts = strings.Split(val, ",")
		case "addrs":
			s.addrs = strings.Split(val, ",")
		case "registry":
			s.RegistryAddr = val
		default:
			return nil, fmt.Errorf("%s=%q: unknown key %q (want hosts, addrs, registry)", EnvVar, v, key)
		}
	}
	if len(s.Hosts) == 0 || s.Hosts[0] == "" {
		return nil, fmt.Errorf("%s=%q: no hosts", EnvVar, v)
	}
	if len(s.addrs) != len(s.Hosts) {
		return nil, fmt.Errorf("%s=%q: %d hosts but %d addrs", EnvVar, v, len(s.Hosts), len(s.addrs))
	}
	for _, ip := range append([]string{s.RegistryAddr}, s.addrs...) {
		if net.ParseIP(ip) == nil {
			return nil, fmt.Errorf("%s=%q: %q is not an IP address", EnvVar, v, ip)
		}
	}
	return s, nil
}

// NodeAddr is node i's IP: the swarm's published ports (the routing mesh's
// and mode=host ones) are dialable there from the test process.
func (s *Swarm) NodeAddr(i int) string {
	return s.addrs[i]
}

// Client returns a client for node i's Engine API, API version negotiated,
// closed at the end of the test. A node that does not answer fails the test.
func (s *Swarm) Client(t testing.TB, i int) *client.Client {
	t.Helper()
	cli, err := s.dial(i)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func (s *Swarm) dial(i int) (*client.Client, error) {
	cli, err := client.New(client.FromEnv, client.WithHost(s.Hosts[i]))
	if err != nil {
		return nil, fmt.Errorf("swarm node %d (%s): %w", i, s.Hosts[i], err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		cli.Close()
		return nil, fmt.Errorf("swarm node %d (%s) does not answer: %w", i, s.Hosts[i], err)
	}
	return cli, nil
}

// StartRegistry serves the test registry (harness.Registry) on
// RegistryAddr:0 for the rest of the test and returns "IP:PORT": push with
// harness.PushTestApp and name images "IP:PORT/name:tag" in services.
func (s *Swarm) StartRegistry(t testing.TB) string {
	t.Helper()
	return harness.StartRegistryOn(t, s.RegistryAddr)
}

// RoutingMesh reports whether the kernel has IPVS, which the swarm's load
// balancing needs: the routing mesh (ports published in ingress mode,
// answering at every node) and service VIPs (endpoint mode vip, the
// default: a service's name resolves to one virtual IP). Without it those
// do not answer (dockerd logs "Could not get ipvs family information from
// the kernel"); what works is endpoint mode dnsrr (the name resolves to the
// tasks' IPs, over the overlay network between nodes) and ports published
// in host mode (at the node that runs the task). All nodes share the test
// process's kernel, so this looks at its own /proc; .ci/swarm/start.sh
// loads the ip_vs module where it can.
func (s *Swarm) RoutingMesh() bool {
	_, err := os.Stat("/proc/net/ip_vs")
	return err == nil
}

// WaitNetworksGone waits, up to timeout, until no node of the swarm still
// has a network named with prefix. A swarm network removed on the manager
// lingers on a node until its last endpoint there goes, and the manager
// may meanwhile give its subnet to a new network, whose tasks that node
// then rejects ("invalid pool request: Pool overlaps with other one on
// this address space"): a test's cleanup waits for it, so the next test
// starts on a swarm without leftovers. A node that does not answer (a
// test stopped it) is not waited for.
func (s *Swarm) WaitNetworksGone(t testing.TB, prefix string, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for i := range s.Hosts {
		cli, err := s.dial(i)
		if err != nil {
			continue
		}
		for {
			nets, err := cli.NetworkList(ctx, client.NetworkListOptions{Filters: make(client.Filters).Add("name", prefix)})
			left := 0
			for _, n := range nets.Items {
				if strings.HasPrefix(n.Name, prefix) {
					left++
				}
			}
			if err != nil || left == 0 {
				break
			}
			if ctx.Err() != nil {
				t.Logf("swarm node %d still has %d network(s) named %s* after %s", i, left, prefix, timeout)
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		cli.Close()
	}
}
