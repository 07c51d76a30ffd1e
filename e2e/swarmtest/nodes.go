package swarmtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/api/types/swarm"
	"github.com/moby/moby/client"
)

// nodeWait bounds how long the swarm may take to see a node go down or come
// back, and to elect a leader after losing one (Raft's election timeout is
// 10 s; a heartbeat every 2 s).
const nodeWait = 2 * time.Minute

// StopNode stops node i's dockerd, as a host that goes down, and waits until
// a live manager sees it down. The node stays down until StartNode, or the
// end of the test, which starts it again and waits until it is ready.
//
// A stopped node disturbs every other test on the swarm, so StopNode first
// waits for the tests that share it to end, and keeps them out until this
// one ends.
func (s *Swarm) StopNode(t testing.TB, i int) {
	t.Helper()
	s.exclusive(t)
	if s.stopped == nil {
		s.stopped = map[int]bool{}
	}
	if !s.stopped[i] {
		s.stopped[i] = true
		t.Cleanup(func() {
			if s.stopped[i] {
				s.StartNode(t, i)
			}
		})
	}
	s.nodeScript(t, "stop", i)
	s.waitNode(t, i, swarm.NodeStateDown)
}

// StartNode starts node i's dockerd again and waits until a live manager
// sees it ready (and, a manager, reachable).
func (s *Swarm) StartNode(t testing.TB, i int) {
	t.Helper()
	s.nodeScript(t, "start", i)
	delete(s.stopped, i)
	s.waitNode(t, i, swarm.NodeStateReady)
}

// Leader is the index of the node that is the swarm's Raft leader, waiting
// for an election when there is none (after the leader stopped).
func (s *Swarm) Leader(t testing.TB) int {
	t.Helper()
	var leader int
	s.poll(t, "a swarm leader", func(nodes []swarm.Node) bool {
		for _, n := range nodes {
			if n.ManagerStatus != nil && n.ManagerStatus.Leader {
				leader = s.index(n)
				return leader >= 0
			}
		}
		return false
	})
	return leader
}

// NodeID is node i's swarm node ID (for placement constraints such as
// "node.id==ID", and to tell which node a task runs on).
func (s *Swarm) NodeID(t testing.TB, i int) string {
	t.Helper()
	var id string
	s.poll(t, fmt.Sprintf("node %d in the node list", i), func(nodes []swarm.Node) bool {
		for _, n := range nodes {
			if s.index(n) == i {
				id = n.ID
				return true
			}
		}
		return false
	})
	return id
}

// waitNode waits until a live manager lists node i in state want.
func (s *Swarm) waitNode(t testing.TB, i int, want swarm.NodeState) {
	t.Helper()
	s.poll(t, fmt.Sprintf("node %d (%s) %s", i, s.addrs[i], want), func(nodes []swarm.Node) bool {
		for _, n := range nodes {
			if s.index(n) != i {
				continue
			}
			if n.Status.State != want {
				return false
			}
			if n.ManagerStatus == nil {
				return true
			}
			if want == swarm.NodeStateReady {
				return n.ManagerStatus.Reachability == swarm.ReachabilityReachable
			}
			return n.ManagerStatus.Reachability == swarm.ReachabilityUnreachable
		}
		return false
	})
}

// poll lists the swarm's nodes on any node that answers and is not stopped
// until done holds for the list, failing the test after nodeWait.
func (s *Swarm) poll(t testing.TB, what string, done func([]swarm.Node) bool) {
	t.Helper()
	deadline := time.Now().Add(nodeWait)
	var last error
	for {
		nodes, err := s.nodes()
		if err == nil && done(nodes) {
			return
		}
		if err != nil {
			last = err
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s (last error: %v)", nodeWait, what, last)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// nodes is the node list of the first node that answers it: a manager
// without a leader (mid-election) does not.
func (s *Swarm) nodes() ([]swarm.Node, error) {
	var errs []error
	for j := range s.Hosts {
		if s.stopped[j] {
			continue
		}
		cli, err := s.dial(j)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		res, err := cli.NodeList(ctx, client.NodeListOptions{})
		cancel()
		cli.Close()
		if err != nil {
			errs = append(errs, fmt.Errorf("node list on node %d: %w", j, err))
			continue
		}
		return res.Items, nil
	}
	return nil, errors.Join(errs...)
}

// index is n's index in Hosts, found by its address; -1 if it is not one of
// the swarm's nodes.
func (s *Swarm) index(n swarm.Node) int {
	addr := n.Status.Addr
	if n.ManagerStatus != nil {
		if host, _, err := net.SplitHostPort(n.ManagerStatus.Addr); err == nil {
			addr = host
		}
	}
	for i, a := range s.addrs {
		if a == addr {
			return i
		}
	}
	return -1
}

// nodeScript runs .ci/swarm/node.sh ACTION N for node i (N = i+1).
func (s *Swarm) nodeScript(t testing.TB, action string, i int) {
	t.Helper()
	script, err := findNodeScript()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), nodeWait)
	defer cancel()
	out, err := exec.CommandContext(ctx, "bash", script, action, strconv.Itoa(i+1)).CombinedOutput()
	if err != nil {
		t.Fatalf("bash %s %s %d: %v\n%s", script, action, i+1, err, out)
	}
}

// findNodeScript finds .ci/swarm/node.sh in the working directory (go test
// runs in the package's directory) or above it, in the repository's root.
func findNodeScript() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find .ci/swarm/node.sh: %w", err)
	}
	for {
		p := filepath.Join(dir, ".ci", "swarm", "node.sh")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("find .ci/swarm/node.sh: not in the working directory nor above it (run the test inside the repository)")
		}
		dir = parent
	}
}

// lockPath is the lock every test on the machine's swarm takes.
func lockPath() string { return filepath.Join(os.TempDir(), "lockstep-swarm.lock") }

// lockSwarm takes the swarm's lock (syscall.LOCK_SH or LOCK_EX) for the
// rest of the test, failing after lockWait.
func lockSwarm(t testing.TB, how int) *os.File {
	t.Helper()
	f, err := os.OpenFile(lockPath(), os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		t.Fatalf("lock the swarm: %v", err)
	}
	t.Cleanup(func() { f.Close() })
	flock(t, f, how)
	return f
}

// lockWait bounds the wait for the swarm's lock: the tests ahead may stop
// and start nodes.
const lockWait = 15 * time.Minute

func flock(t testing.TB, f *os.File, how int) {
	t.Helper()
	deadline := time.Now().Add(lockWait)
	for {
		err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB)
		if err == nil {
			return
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			t.Fatalf("lock the swarm (%s): %v", f.Name(), err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for the swarm's lock %s: other tests hold it", lockWait, f.Name())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// exclusive turns the test's shared lock into an exclusive one, once.
func (s *Swarm) exclusive(t testing.TB) {
	t.Helper()
	switch {
	case s.exclusiveHeld:
		return
	case s.lock == nil: // a Swarm from Parse, not Require
		s.lock = lockSwarm(t, syscall.LOCK_EX)
	default:
		flock(t, s.lock, syscall.LOCK_EX)
	}
	s.exclusiveHeld = true
}
