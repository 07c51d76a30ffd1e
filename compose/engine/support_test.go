package engine

import (
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"

	"github.com/lockstep-gitops/lockstep/compose"
)

func TestCheckAPISupport(t *testing.T) {
	mac, _ := net.ParseMAC("02:42:ac:11:00:02")
	withEndpoint := func(ep network.EndpointSettings) *compose.Project {
		return &compose.Project{Name: "p", Services: []compose.Service{{
			Name:       "web",
			Host:       &container.HostConfig{},
			Networking: &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{"p_front": &ep}},
		}}}
	}
	subpath := &compose.Project{Name: "p", Services: []compose.Service{{
		Name: "db",
		Host: &container.HostConfig{Mounts: []mount.Mount{{Type: mount.TypeVolume, Source: "data", Target: "/data",
			VolumeOptions: &mount.VolumeOptions{Subpath: "pg"}}}},
	}}}
	tests := []struct {
		name string
		api  string
		p    *compose.Project
		want string // "" = supported
	}{
		{"plain service on an old engine", "1.41", withEndpoint(network.EndpointSettings{Aliases: []string{"web"}}), ""},
		{"mac address on 1.41", "1.41", withEndpoint(network.EndpointSettings{MacAddress: network.HardwareAddr(mac)}), `service "web": mac_address (network front) needs Docker Engine API 1.44`},
		{"mac address on 1.44", "1.44", withEndpoint(network.EndpointSettings{MacAddress: network.HardwareAddr(mac)}), ""},
		{"gateway priority on 1.47", "1.47", withEndpoint(network.EndpointSettings{GwPriority: 10}), "gw_priority (network front) needs Docker Engine API 1.48"},
		{"gateway priority on 1.48", "1.48", withEndpoint(network.EndpointSettings{GwPriority: 10}), ""},
		{"interface name on 1.48", "1.48", withEndpoint(network.EndpointSettings{DriverOpts: map[string]string{ifnameOption: "eth7"}}), "interface_name (network front) needs Docker Engine API 1.49"},
		{"interface name on 1.49", "1.49", withEndpoint(network.EndpointSettings{DriverOpts: map[string]string{ifnameOption: "eth7"}}), ""},
		{"volume subpath on 1.41", "1.41", subpath, `service "db": volumes subpath (/data) needs Docker Engine API 1.45`},
		{"volume subpath on 1.45", "1.45", subpath, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := checkAPISupport(tc.api, tc.p)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			var ue *UnsupportedError
			if !errors.As(err, &ue) || !ue.Permanent() || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "this engine speaks "+tc.api) {
				t.Fatalf("got %v, want an UnsupportedError containing %q", err, tc.want)
			}
		})
	}
}
