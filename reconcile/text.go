package reconcile

import (
	"bufio"
	"fmt"
	"io"
	"sort"
	"strings"
)

// WriteText prints the plan as a diff for people:
//
//	production (project prod) @ 9fceb02d0ae5
//	  + network prod_default
//	  ~ recreate web (prod-web-1) [stop-first]
//	      image 127.0.0.1:5000/web:aaa -> 127.0.0.1:5000/web:bbb
//	  - remove prod-old-1 (service "old" removed from the compose files; its volumes are kept)
//	  then waits: web 15s without restart
//	  3 changes: 1 to create, 1 to recreate, 1 to remove
//
// The output depends only on the plan, so it is stable enough for golden
// files and for comparing two plans by eye.
func (p *Plan) WriteText(w io.Writer) error {
	bw := bufio.NewWriter(w)
	header := p.Environment
	if p.Project != "" && p.Project != p.Environment {
		header += fmt.Sprintf(" (project %s)", p.Project)
	}
	if p.Commit != "" {
		header += " @ " + short(p.Commit)
	}
	fmt.Fprintln(bw, header)
	for _, a := range p.Actions {
		writeAction(bw, a)
	}
	if len(p.Gate) > 0 {
		fmt.Fprintf(bw, "  then waits: %s\n", strings.Join(p.Gate, ", "))
	}
	for _, warn := range p.Warnings {
		fmt.Fprintf(bw, "  ! %s\n", warn)
	}
	if p.Empty() {
		fmt.Fprintln(bw, "  no changes")
	} else {
		noun := "changes"
		if len(p.Actions) == 1 {
			noun = "change"
		}
		fmt.Fprintf(bw, "  %d %s: %s\n", len(p.Actions), noun, p.Summary())
	}
	return bw.Flush()
}

func writeAction(w io.Writer, a Action) {
	tail := actionFlags(a)
	inline := func(extra ...string) string {
		rs := append(append([]string(nil), a.Reasons...), extra...)
		if len(rs) == 0 {
			return ""
		}
		return " (" + strings.Join(rs, "; ") + ")"
	}
	switch a.Kind {
	case ActPull:
		fmt.Fprintf(w, "  + pull %s%s\n", a.Image, inline())
		return
	case ActCreateNetwork:
		fmt.Fprintf(w, "  + network %s\n", a.Network)
		return
	case ActCreateVolume:
		fmt.Fprintf(w, "  + volume %s\n", a.Volume)
		return
	case ActCreateConfig:
		fmt.Fprintf(w, "  + config %s%s\n", a.Config, tail)
	case ActCreateSecret:
		fmt.Fprintf(w, "  + secret %s%s\n", a.Secret, tail)
	case ActRemoveConfig:
		fmt.Fprintf(w, "  - remove config %s%s\n", a.Config, inline("once the stack converged and no service uses it"))
		return
	case ActRemoveSecret:
		fmt.Fprintf(w, "  - remove secret %s%s\n", a.Secret, inline("once the stack converged and no service uses it"))
		return
	case ActAdopt:
		switch {
		case a.Network != "":
			fmt.Fprintf(w, "  = adopt network %s%s\n", a.Network, inline())
			return
		case a.Volume != "":
			fmt.Fprintf(w, "  = adopt volume %s%s\n", a.Volume, inline())
			return
		}
		fmt.Fprintf(w, "  = adopt %s (%s)%s\n", a.Service, a.Container, tail)
	case ActRemove:
		if a.SwarmService != "" {
			fmt.Fprintf(w, "  - remove service %s%s%s\n", a.SwarmService, inline("its volumes are kept"), tail)
			return
		}
		fmt.Fprintf(w, "  - remove %s%s%s\n", a.Container, inline("its volumes are kept"), tail)
		return
	case ActRemoveNetwork:
		fmt.Fprintf(w, "  - remove network %s%s\n", a.Network, inline())
		return
	case ActRemoveVolume:
		fmt.Fprintf(w, "  - remove volume %s%s\n", a.Volume, inline())
		return
	case ActCreate:
		if a.SwarmService != "" {
			fmt.Fprintf(w, "  + create service %s (%s)%s\n", a.Service, a.SwarmService, tail)
			break
		}
		fmt.Fprintf(w, "  + create %s (%s)%s\n", a.Service, a.Container, tail)
	case ActUpdate:
		fmt.Fprintf(w, "  ~ update service %s (%s)%s\n", a.Service, a.SwarmService, tail)
	case ActRecreate:
		if a.SwarmService != "" {
			fmt.Fprintf(w, "  ~ recreate service %s (%s)%s\n", a.Service, a.SwarmService, tail)
			break
		}
		fmt.Fprintf(w, "  ~ recreate %s (%s)%s\n", a.Service, a.Container, tail)
	case ActStart:
		fmt.Fprintf(w, "  > start %s (%s)%s\n", a.Service, a.Container, tail)
	case ActRestart:
		fmt.Fprintf(w, "  ~ restart %s (%s)%s\n", a.Service, a.Container, tail)
	case ActReconnect:
		fmt.Fprintf(w, "  ~ reconnect %s (%s)%s\n", a.Service, a.Container, tail)
	default:
		fmt.Fprintf(w, "  ? %s %s (%s)%s\n", a.Kind, a.Service, a.Container, tail)
	}
	for _, r := range a.Reasons {
		fmt.Fprintf(w, "      %s\n", r)
	}
}

// Summary is the plan in one line: "1 to pull, 2 to create, 1 to recreate,
// 1 to remove", or "no changes". Networks and volumes, and a stack's
// configs and secrets, count as creates and removes.
func (p *Plan) Summary() string {
	if p.Empty() {
		return "no changes"
	}
	counts := map[ActionKind]int{}
	for _, a := range p.Actions {
		k := a.Kind
		switch k {
		case ActCreateNetwork, ActCreateVolume, ActCreateConfig, ActCreateSecret:
			k = ActCreate
		case ActRemoveNetwork, ActRemoveVolume, ActRemoveConfig, ActRemoveSecret:
			k = ActRemove
		}
		counts[k]++
	}
	var parts []string
	for _, k := range []ActionKind{ActPull, ActAdopt, ActCreate, ActRecreate, ActUpdate, ActStart, ActRestart, ActReconnect, ActRemove} {
		if counts[k] > 0 {
			parts = append(parts, fmt.Sprintf("%d to %s", counts[k], k))
			delete(counts, k)
		}
	}
	// Kinds this version does not know (a plan read back from JSON), sorted
	// so the line stays stable.
	var unknown []string
	for k := range counts {
		unknown = append(unknown, string(k))
	}
	sort.Strings(unknown)
	for _, k := range unknown {
		parts = append(parts, fmt.Sprintf("%d to %s", counts[ActionKind(k)], k))
	}
	return strings.Join(parts, ", ")
}

// actionFlags is the bracketed tail of an action's line: its update order,
// drift, adopt; "" for none.
func actionFlags(a Action) string {
	var flags []string
	if a.Order != "" {
		flags = append(flags, a.Order)
	}
	if a.Drift {
		flags = append(flags, "drift")
	}
	if a.Adopt && a.Kind != ActAdopt {
		flags = append(flags, "adopt")
	}
	if len(flags) == 0 {
		return ""
	}
	return " [" + strings.Join(flags, ", ") + "]"
}
