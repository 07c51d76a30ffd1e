package compose

import (
	"net"
	"slices"
	"strconv"
	"strings"
)

// HostPort is a fixed host port a service publishes, as the engine binds
// it.
type HostPort struct {
	IP    string // host_ip as written; "" (or 0.0.0.0, ::) is every address
	Port  int
	Proto string // "tcp", "udp" or "sctp"
}

func (h HostPort) String() string {
	ip := h.IP
	if ip == "" {
		ip = "0.0.0.0"
	}
	return net.JoinHostPort(ip, strconv.Itoa(h.Port)) + "/" + h.Proto
}

// Overlaps reports whether binding h would collide with o: the same port
// and protocol on the same address, or on every address on either side.
func (h HostPort) Overlaps(o HostPort) bool {
	if h.Port != o.Port || h.Proto != o.Proto {
		return false
	}
	return h.IP == o.IP || anyAddress(h.IP) || anyAddress(o.IP)
}

func anyAddress(ip string) bool {
	if ip == "" {
		return true
	}
	a := net.ParseIP(ip)
	return a == nil || a.IsUnspecified()
}

// HostPorts returns the fixed host ports the service publishes, sorted. A
// published range ("8000-8005:80") is left out: the engine picks a free
// port in it, so no single port must be free; so is an ephemeral one.
func (s *Service) HostPorts() []HostPort {
	if s.Host == nil {
		return nil
	}
	var out []HostPort
	for port, binds := range s.Host.PortBindings {
		for _, b := range binds {
			n, err := strconv.Atoi(b.HostPort)
			if err != nil || n <= 0 || strings.Contains(b.HostPort, "-") {
				continue
			}
			h := HostPort{Port: n, Proto: string(port.Proto())}
			if b.HostIP.IsValid() {
				h.IP = b.HostIP.String()
			}
			if !slices.Contains(out, h) {
				out = append(out, h)
			}
		}
	}
	slices.SortFunc(out, func(a, b HostPort) int { return strings.Compare(a.String(), b.String()) })
	return out
}
