package engine

import (
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/moby/moby/api/types/container"

	"github.com/lockstep-gitops/lockstep/compose"
)

// Observe reads a project's containers from one labelled container list
// and inspects only the containers whose observed facts the list cannot
// give. What each source provides:
//
//	list (every container, one call): ID, name, labels (hashes, commit,
//	  service, number, working dir), state, health (Summary.Health on
//	  newer engines, else the "(healthy)" of its status), image and image
//	  ID, network IDs and endpoint IDs, mounts, published ports.
//	inspect (per container): restart count, exit code, the aliases of each
//	  endpoint (the list reports none), the image reference when the list
//	  shows an image ID instead (the tag has moved since), env and the
//	  rest of the configuration.
//
// A container that is not running is always inspected: its exit code,
// and the last health status it kept, are not in the list; in a converged
// project that is a one-shot job or two. A running container's restart
// count and aliases cannot change without its endpoints changing (a
// restart releases the network sandbox and makes new endpoints; an alias
// is only set by a connect, which makes a new endpoint), so they are
// remembered per container under its endpoint IDs (factCache) and a
// running container whose endpoints are those already seen is not
// inspected again.
//
// To observe a new field: when the list has it, set it in fromSummary;
// when only inspect has it, set it in fromInspect and, if it can change
// while the endpoints stay the same, add a condition to needsInspect (and
// to inspectFacts, when it is constant per endpoint set, to remember it).

// listFacts are what a container summary leaves to an inspect.
type listFacts struct {
	// key identifies the container's current run: its ID and endpoint
	// IDs. "" when the container is not running or has no endpoint of its
	// own (network_mode: container:x): then it is inspected every time.
	key string
	// imageUnknown: the list names the image by ID, not by the reference
	// the container was created from.
	imageUnknown bool
}

// inspectFacts are what an inspect gives that stays the same as long as
// a running container keeps its endpoints.
type inspectFacts struct {
	Key          string              `json:"key"`
	RestartCount int                 `json:"restart_count"`
	Aliases      map[string][]string `json:"aliases,omitempty"` // by network name
}

// fromSummary converts a list entry into the observed model, as far as the
// list goes, and says what it left out.
func fromSummary(s container.Summary) (compose.Container, listFacts) {
	c := compose.Container{
		ID:      s.ID,
		Name:    containerName(s),
		Image:   s.Image,
		ImageID: s.ImageID,
		State:   string(s.State),
		Labels:  maps.Clone(s.Labels),
	}
	if c.Labels == nil {
		c.Labels = map[string]string{}
	}
	setFromLabels(&c)
	c.Health = summaryHealth(s)
	var facts listFacts
	// The engine shows the image ID when the reference no longer names
	// the image the container runs (or was removed).
	facts.imageUnknown = s.Image == "" || s.Image == s.ImageID || strings.HasPrefix(s.Image, "sha256:")
	var endpoints []string
	complete := true // every endpoint has its ID
	if ns := s.NetworkSettings; ns != nil && len(ns.Networks) > 0 {
		c.Networks = make(map[string]compose.Endpoint, len(ns.Networks))
		for name, ep := range ns.Networks {
			if ep == nil {
				continue
			}
			c.Networks[name] = compose.Endpoint{NetworkID: ep.NetworkID}
			if ep.EndpointID == "" {
				complete = false
			}
			endpoints = append(endpoints, name+"="+ep.EndpointID)
		}
	}
	if c.State == string(container.StateRunning) && complete && len(endpoints) > 0 {
		slices.Sort(endpoints)
		facts.key = s.ID + " " + strings.Join(endpoints, " ")
	}
	return c, facts
}

// needsInspect says whether c, from the list, must be inspected, given
// what was remembered about it (zero when nothing was).
func needsInspect(c compose.Container, facts listFacts, known inspectFacts) bool {
	switch {
	case c.State != string(container.StateRunning):
		return true // exit code, kept health status
	case facts.imageUnknown:
		return true
	case c.Hash == "":
		// Not created by lockstep (Docker Compose's, or adopted from it):
		// how it was created (Spec) comes only from inspect, and the plan
		// needs it to say how it differs from the compose files.
		return true
	case facts.key == "" || known.Key != facts.key:
		return true // a new run, or never seen: restart count, aliases
	}
	return false
}

// withFacts completes c from the list with remembered inspect facts.
func withFacts(c compose.Container, known inspectFacts) compose.Container {
	c.RestartCount = known.RestartCount
	for name, ep := range c.Networks {
		ep.Aliases = slices.Clone(known.Aliases[name])
		c.Networks[name] = ep
	}
	return c
}

// factsOf is what to remember of an inspected container, under key.
func factsOf(key string, c compose.Container) inspectFacts {
	f := inspectFacts{Key: key, RestartCount: c.RestartCount}
	for name, ep := range c.Networks {
		if len(ep.Aliases) > 0 {
			if f.Aliases == nil {
				f.Aliases = map[string][]string{}
			}
			f.Aliases[name] = slices.Clone(ep.Aliases)
		}
	}
	return f
}

// setFromLabels fills the fields lockstep and compose keep in labels.
func setFromLabels(c *compose.Container) {
	c.Service = c.Labels[compose.LabelService]
	if n, err := strconv.Atoi(c.Labels[compose.LabelContainerNumber]); err == nil {
		c.Number = n
	}
	c.Hash = c.Labels[compose.LabelHash]
	c.SpecHash = c.Labels[compose.LabelSpecHash]
	c.ConfigHash = c.Labels[compose.LabelConfigHash]
	c.Commit = c.Labels[compose.LabelCommit]
	c.WorkingDir = c.Labels[compose.LabelWorkingDir]
}

// statusHealth finds the health in a running container's status, as every
// engine formats it: "Up 2 minutes (healthy)", "Up 3 seconds (health:
// starting)", "Up 1 hour (unhealthy)".
var statusHealth = regexp.MustCompile(`\((healthy|unhealthy|health: starting)\)$`)

// summaryHealth is the health status of a listed container: the list's
// own field where the engine has it (API 1.52 and later), else its status
// text; "" without a healthcheck.
func summaryHealth(s container.Summary) string {
	if h := s.Health; h != nil {
		if h.Status == container.NoHealthcheck || h.Status == "" {
			return ""
		}
		return string(h.Status)
	}
	m := statusHealth.FindStringSubmatch(s.Status)
	if m == nil {
		return ""
	}
	if m[1] == "health: starting" {
		return string(container.Starting)
	}
	return m[1]
}
