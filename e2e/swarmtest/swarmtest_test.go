package swarmtest

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"syscall"
	"testing"
)

func TestParse(t *testing.T) {
	good := "hosts=unix:///run/a.sock,unix:///run/b.sock;addrs=10.237.0.11,10.237.0.12;registry=10.237.0.1"
	s, err := Parse(good)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"unix:///run/a.sock", "unix:///run/b.sock"}; !reflect.DeepEqual(s.Hosts, want) {
		t.Errorf("Hosts = %q, want %q", s.Hosts, want)
	}
	if s.RegistryAddr != "10.237.0.1" || s.NodeAddr(1) != "10.237.0.12" {
		t.Errorf("RegistryAddr %q, NodeAddr(1) %q", s.RegistryAddr, s.NodeAddr(1))
	}

	for _, tc := range []struct{ in, want string }{
		{"hosts=unix:///a;addrs=10.0.0.1", `"" is not an IP address`},
		{"hosts=unix:///a,unix:///b;addrs=10.0.0.1;registry=10.0.0.9", "2 hosts but 1 addrs"},
		{"addrs=10.0.0.1;registry=10.0.0.9", "no hosts"},
		{"hosts=unix:///a;addrs=node1;registry=10.0.0.9", `"node1" is not an IP address`},
		{"hosts=unix:///a;addrs=10.0.0.1;registry=10.0.0.9;mesh=yes", `unknown key "mesh"`},
		{"on", `"on" is not key=value`},
	} {
		_, err := Parse(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q) = %v, want an error with %q", tc.in, err, tc.want)
		}
	}
}

// TestLock: tests share the swarm's lock; an exclusive one waits for them.
func TestLock(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	lockSwarm(t, syscall.LOCK_SH)
	lockSwarm(t, syscall.LOCK_SH)
	f, err := os.OpenFile(lockPath(), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); !errors.Is(err, syscall.EWOULDBLOCK) {
		t.Fatalf("exclusive lock while two tests hold it shared: %v, want EWOULDBLOCK", err)
	}
}
