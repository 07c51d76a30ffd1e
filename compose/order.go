package compose

import (
	"fmt"
	"slices"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
)

// orderServices sorts services so that every service comes after the ones
// it needs: its depends_on entries and the service whose network namespace
// it joins (network_mode: service:x, which compose-go also records as a
// dependency). Ties are broken by name so the order is stable. A cycle is
// an error naming it.
func orderServices(services []Service) ([]Service, error) {
	byName := map[string]*Service{}
	for i := range services {
		byName[services[i].Name] = &services[i]
	}
	needs := func(s *Service) []string {
		var out []string
		for _, d := range s.DependsOn {
			out = append(out, d.Service)
		}
		if mode := string(s.Host.NetworkMode); strings.HasPrefix(mode, types.ServicePrefix) {
			out = append(out, strings.TrimPrefix(mode, types.ServicePrefix))
		}
		slices.Sort(out)
		return slices.Compact(out)
	}

	var ordered []Service
	done := map[string]bool{}
	for len(ordered) < len(services) {
		// Place the first service (by name; services is sorted) whose
		// needs are all placed: the lexicographically smallest
		// topological order, stable across loads.
		placed := false
		for i := range services {
			s := &services[i]
			if done[s.Name] {
				continue
			}
			ready := true
			for _, n := range needs(s) {
				if _, known := byName[n]; !known {
					return nil, &LoadError{Service: s.Name, Key: "network_mode", Msg: fmt.Sprintf("refers to service %q, which is not deployed; define it or change network_mode", n)}
				}
				if !done[n] {
					ready = false
				}
			}
			if ready {
				ordered = append(ordered, *s)
				done[s.Name] = true
				placed = true
				break
			}
		}
		if !placed {
			return nil, cycleError(services, done, needs)
		}
	}
	return ordered, nil
}

// cycleError finds one dependency cycle among the services not placed and
// names it: `a -> b -> a`.
func cycleError(services []Service, done map[string]bool, needs func(*Service) []string) error {
	byName := map[string]*Service{}
	for i := range services {
		byName[services[i].Name] = &services[i]
	}
	var start string
	for _, s := range services {
		if !done[s.Name] {
			start = s.Name
			break
		}
	}
	// Follow unplaced needs until a name repeats: every unplaced service
	// has at least one unplaced need, so this terminates on a cycle.
	path := []string{start}
	seen := map[string]int{start: 0}
	cur := start
	for {
		next := ""
		for _, n := range needs(byName[cur]) {
			if !done[n] {
				next = n
				break
			}
		}
		if i, ok := seen[next]; ok {
			cycle := append(path[i:], next)
			return &LoadError{Service: cycle[0], Key: "depends_on", Msg: "dependency cycle: " + strings.Join(cycle, " -> ") + "; break the cycle"}
		}
		seen[next] = len(path)
		path = append(path, next)
		cur = next
	}
}
