package engine

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"syscall"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/lockstep-gitops/lockstep/compose"
)

// portProbe tries to bind a host port and says whether something already
// holds it (errPortInUse), so apply can refuse before it stops anything.
type portProbe func(h compose.HostPort) error

var errPortInUse = errors.New("address already in use")

// localProbe returns the probe for an engine reached at daemonHost: only a
// local socket means the ports the engine binds are this host's; for a
// remote engine (tcp://, ssh://) nothing is probed and the engine itself
// reports a taken port when the container starts.
func localProbe(daemonHost string) portProbe {
	if strings.HasPrefix(daemonHost, "unix://") || strings.HasPrefix(daemonHost, "npipe://") {
		return bindProbe
	}
	return nil
}

// bindProbe binds h for an instant. Only "address in use" counts: a port
// under 1024 that this user may not bind (the engine, as root, may), or an
// address this host does not have, is left for the engine to judge.
func bindProbe(h compose.HostPort) error {
	network, host := "", h.IP
	switch a := net.ParseIP(h.IP); {
	case a == nil:
		host = "" // every address, both families
	case a.To4() != nil:
		network = "4" // 0.0.0.0 too: the engine binds IPv4 only then
	default:
		network = "6"
	}
	addr := net.JoinHostPort(host, strconv.Itoa(h.Port))
	var err error
	switch h.Proto {
	case "tcp":
		var l net.Listener
		if l, err = net.Listen("tcp"+network, addr); err == nil {
			l.Close()
		}
	case "udp":
		var c net.PacketConn
		if c, err = net.ListenPacket("udp"+network, addr); err == nil {
			c.Close()
		}
	default:
		return nil // sctp: not probed
	}
	if errors.Is(err, syscall.EADDRINUSE) {
		return errPortInUse
	}
	return nil
}

// observePorts says what holds each fixed host port p's services publish:
// a running container (any project's: the engine lists its published
// ports), else, probed on this host, a process outside Docker.
func (e *Engine) observePorts(ctx context.Context, p *compose.Project) ([]compose.PortHolder, error) {
	var want []compose.HostPort
	for i := range p.Services {
		if s := &p.Services[i]; s.Replicas > 0 {
			want = append(want, s.HostPorts()...)
		}
	}
	if len(want) == 0 {
		return nil, nil
	}
	list, err := e.cli.ContainerList(ctx, client.ContainerListOptions{})
	if err != nil {
		return nil, fmt.Errorf("observe project %s: list running containers for their published ports: %w", p.Name, err)
	}
	return portHolders(want, list.Items, e.probe), nil
}

// portHolders matches the wanted host ports with the running containers'
// published ones, and probes those no container holds (when probe is set).
func portHolders(want []compose.HostPort, running []container.Summary, probe portProbe) []compose.PortHolder {
	var out []compose.PortHolder
	seen := map[compose.HostPort]bool{}
	for _, h := range want {
		if seen[h] {
			continue
		}
		seen[h] = true
		if c, ok := publisher(h, running); ok {
			out = append(out, compose.PortHolder{HostPort: h, ContainerID: c.ID, ContainerName: containerName(c),
				Project: c.Labels[compose.LabelProject], Service: c.Labels[compose.LabelService]})
			continue
		}
		if probe != nil && errors.Is(probe(h), errPortInUse) {
			out = append(out, compose.PortHolder{HostPort: h})
		}
	}
	return out
}

// publisher is the running container that publishes h, if one does.
func publisher(h compose.HostPort, running []container.Summary) (container.Summary, bool) {
	for _, c := range running {
		for _, pp := range c.Ports {
			if pp.PublicPort == 0 {
				continue
			}
			got := compose.HostPort{Port: int(pp.PublicPort), Proto: pp.Type}
			if pp.IP.IsValid() {
				got.IP = pp.IP.String()
			}
			if h.Overlaps(got) {
				return c, true
			}
		}
	}
	return container.Summary{}, false
}

func containerName(c container.Summary) string {
	if len(c.Names) == 0 {
		return shortID(c.ID)
	}
	return strings.TrimPrefix(c.Names[0], "/")
}
