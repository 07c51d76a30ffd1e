package engine

import (
	"errors"
	"net"
	"net/netip"
	"reflect"
	"testing"

	"github.com/moby/moby/api/types/container"

	"github.com/lockstep-gitops/lockstep/compose"
)

func TestPortHolders(t *testing.T) {
	tcp := func(ip string, port int) compose.HostPort { return compose.HostPort{IP: ip, Port: port, Proto: "tcp"} }
	running := []container.Summary{
		{ID: "aaa", Names: []string{"/other-web-1"}, Labels: map[string]string{compose.LabelProject: "other", compose.LabelService: "web"},
			Ports: []container.PortSummary{{IP: netip.MustParseAddr("0.0.0.0"), PrivatePort: 80, PublicPort: 8080, Type: "tcp"}, {PrivatePort: 9000, Type: "tcp"}}},
		{ID: "bbb", Names: []string{"/bare"},
			Ports: []container.PortSummary{{IP: netip.MustParseAddr("127.0.0.1"), PrivatePort: 53, PublicPort: 5353, Type: "udp"}}},
	}
	probed := []compose.HostPort{}
	probe := func(h compose.HostPort) error {
		probed = append(probed, h)
		if h.Port == 8443 {
			return errPortInUse
		}
		return nil
	}
	want := []compose.HostPort{tcp("127.0.0.1", 8080), tcp("127.0.0.1", 8443), tcp("", 9000), {Port: 5353, Proto: "udp"}, tcp("127.0.0.1", 8443)}
	got := portHolders(want, running, probe)
	wantHolders := []compose.PortHolder{
		{HostPort: tcp("127.0.0.1", 8080), ContainerID: "aaa", ContainerName: "other-web-1", Project: "other", Service: "web"},
		{HostPort: tcp("127.0.0.1", 8443)},
		{HostPort: compose.HostPort{Port: 5353, Proto: "udp"}, ContainerID: "bbb", ContainerName: "bare"},
	}
	if !reflect.DeepEqual(got, wantHolders) {
		t.Errorf("portHolders =\n%+v\nwant\n%+v", got, wantHolders)
	}
	// Only ports no container publishes are probed, each once; an
	// unpublished container port (9000 without PublicPort) holds nothing.
	if wantProbed := []compose.HostPort{tcp("127.0.0.1", 8443), tcp("", 9000)}; !reflect.DeepEqual(probed, wantProbed) {
		t.Errorf("probed %+v, want %+v", probed, wantProbed)
	}
	// A remote engine is not probed.
	if got := portHolders(want[1:2], nil, nil); len(got) != 0 {
		t.Errorf("without a probe: %+v", got)
	}
}

func TestBindProbe(t *testing.T) {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	for _, ip := range []string{"127.0.0.1", "0.0.0.0", ""} {
		if err := bindProbe(compose.HostPort{IP: ip, Port: port, Proto: "tcp"}); !errors.Is(err, errPortInUse) {
			t.Errorf("probe %q:%d while held = %v, want errPortInUse", ip, port, err)
		}
	}
	l.Close()
	if err := bindProbe(compose.HostPort{IP: "127.0.0.1", Port: port, Proto: "tcp"}); err != nil {
		t.Errorf("probe of a free port = %v", err)
	}
	if localProbe("tcp://10.0.0.5:2376") != nil || localProbe("ssh://deploy@host") != nil || localProbe("unix:///var/run/docker.sock") == nil {
		t.Error("only a local engine's ports are probed")
	}
}
