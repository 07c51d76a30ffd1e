package engine

import (
	"fmt"
	"strings"

	"github.com/moby/moby/client/pkg/versions"

	"github.com/lockstep-gitops/lockstep/compose"
)

// UnsupportedError is a compose setting the engine's API version cannot
// carry: older engines drop unknown fields without an error, so lockstep
// refuses the release instead of deploying it without the setting.
type UnsupportedError struct {
	Service, Key, MinAPI, API string
}

func (e *UnsupportedError) Error() string {
	return fmt.Sprintf("service %q: %s needs Docker Engine API %s or later, and this engine speaks %s: upgrade the engine or remove %s from the compose file",
		e.Service, e.Key, e.MinAPI, e.API, e.Key)
}

// Permanent: retrying against the same engine cannot help.
func (e *UnsupportedError) Permanent() bool { return true }

// ifnameOption is the endpoint driver option compose's interface_name
// becomes.
const ifnameOption = "com.docker.network.endpoint.ifname"

// checkAPISupport refuses settings the engine at API version api would
// ignore: a per-network MAC address (1.44), a gateway priority (1.48), an
// interface name (1.49), a volume subpath (1.45).
func checkAPISupport(api string, p *compose.Project) error {
	for i := range p.Services {
		svc := &p.Services[i]
		unsupported := func(key, min string) error {
			if versions.LessThan(api, min) {
				return &UnsupportedError{Service: svc.Name, Key: key, MinAPI: min, API: api}
			}
			return nil
		}
		if svc.Networking != nil {
			for name, ep := range svc.Networking.EndpointsConfig {
				if ep == nil {
					continue
				}
				if len(ep.MacAddress) > 0 {
					if err := unsupported("mac_address (network "+strings.TrimPrefix(name, p.Name+"_")+")", "1.44"); err != nil {
						return err
					}
				}
				// Engines before 28.1 take the driver option and ignore it.
				if ep.DriverOpts[ifnameOption] != "" {
					if err := unsupported("interface_name (network "+strings.TrimPrefix(name, p.Name+"_")+")", "1.49"); err != nil {
						return err
					}
				}
				if ep.GwPriority != 0 {
					if err := unsupported("gw_priority (network "+strings.TrimPrefix(name, p.Name+"_")+")", "1.48"); err != nil {
						return err
					}
				}
			}
		}
		if svc.Host != nil {
			for _, m := range svc.Host.Mounts {
				if m.VolumeOptions != nil && m.VolumeOptions.Subpath != "" {
					if err := unsupported("volumes subpath ("+m.Target+")", "1.45"); err != nil {
						return err
					}
				}
			}
		}
	}
	return nil
}
