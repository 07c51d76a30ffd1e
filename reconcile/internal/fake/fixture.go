package fake

import (
	"crypto/sha256"
	"fmt"
	"slices"
	"strings"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"

	"github.com/lockstep-gitops/lockstep/compose"
)

// Fixtures: a small desired project built by hand, and observed containers
// that match it, so each test states only what differs.

// The commits, image references and image IDs of the fixture.
const (
	CommitA = "9fceb02d0ae598e95dc970b74767f19372d61af8"
	CommitB = "4d2e1aa0c2b7f3a1e5d6c7b8a9f0e1d2c3b4a5f6"
	ImgDB   = "127.0.0.1:5000/db:16"
	ImgWebA = "127.0.0.1:5000/web:aaa"
	ImgWebB = "127.0.0.1:5000/web:bbb"
	ImgJob  = "127.0.0.1:5000/migrate:aaa"
	IDDB    = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	IDWebA  = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	IDWebB  = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	IDJob   = "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"
)

// Service is the service name running image (pull policy missing, one
// replica, stop-first updates), changed by mods; its hash is computed
// after mods.
func Service(name, image string, mods ...func(*compose.Service)) compose.Service {
	s := compose.Service{
		Name:        name,
		Image:       image,
		PullPolicy:  compose.PullMissing,
		Replicas:    1,
		UpdateOrder: compose.StopFirst,
		Config:      &container.Config{Image: image, Labels: map[string]string{}},
		Host:        &container.HostConfig{},
		ConfigHash:  SHA("config", name, image),
	}
	for _, m := range mods {
		m(&s)
	}
	s.Hash = HashOf(s)
	return s
}

// HashOf stands in for compose's hash: config hash plus file digests.
func HashOf(s compose.Service) string {
	var b strings.Builder
	b.WriteString(s.ConfigHash)
	for _, f := range s.Files {
		fmt.Fprintf(&b, "|%s=%s", f.Path, f.Digest)
	}
	return SHA(b.String())
}

// SHA is a stand-in hash that looks like the real ones (hex, differing in
// its first 12 characters).
func SHA(parts ...string) string {
	return fmt.Sprintf("%x", sha256.Sum256([]byte(strings.Join(parts, "\x00"))))
}

// DependsOn makes a service depend, required, on dep with condition.
func DependsOn(dep, condition string) func(*compose.Service) {
	return func(s *compose.Service) {
		s.DependsOn = append(s.DependsOn, compose.Dependency{Service: dep, Condition: condition, Required: true})
	}
}

// OnNetworks attaches a service to the networks of the given keys, each
// with the service name as alias plus the extra aliases, the way compose
// converts `networks:`; its engine names are "prod_<key>". The first is
// the primary network.
func OnNetworks(keys []string, aliases ...string) func(*compose.Service) {
	return func(s *compose.Service) {
		s.Networking = &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{}}
		for i, k := range keys {
			name := "prod_" + k
			s.Networking.EndpointsConfig[name] = &network.EndpointSettings{Aliases: append([]string{s.Name}, aliases...)}
			if i == 0 {
				s.Host.NetworkMode = container.NetworkMode(name)
			}
		}
	}
}

// NetworkID is the ID the fixture's observed network of key has.
func NetworkID(key string) string { return "net-" + key }

// Project is the "prod" project of environment "production" at CommitA:
// db (healthcheck), migrate (one-shot, after db healthy), web (after migrate
// completed), on the default network with a data volume.
func Project(mods ...func(*compose.Project)) *compose.Project {
	p := &compose.Project{
		Name:        "prod",
		Environment: "production",
		Commit:      CommitA,
		ReleaseDir:  "/var/lib/lockstep/releases/prod/" + CommitA,
		Networks: []compose.Network{{
			Key: "default", Name: "prod_default", Hash: "nethash-default-0123456789",
			Labels: map[string]string{compose.LabelProject: "prod", compose.LabelNetwork: "default"},
		}},
		Volumes: []compose.Volume{{
			Key: "data", Name: "prod_data",
			Labels: map[string]string{compose.LabelProject: "prod", compose.LabelVolume: "data"},
		}},
		Services: []compose.Service{
			Service("db", ImgDB, func(s *compose.Service) { s.Healthcheck = true }),
			Service("migrate", ImgJob, DependsOn("db", compose.ConditionHealthy)),
			Service("web", ImgWebA, DependsOn("migrate", compose.ConditionCompleted), func(s *compose.Service) {
				s.PublishesPorts = true
				s.Files = []compose.File{{Path: "web/app.conf", Digest: "sha256:conf1"}}
				s.Hash = HashOf(*s)
			}),
		},
	}
	for _, m := range mods {
		m(p)
	}
	return p
}

// ModService changes one service of p and recomputes its hash.
func ModService(name string, m func(*compose.Service)) func(*compose.Project) {
	return func(p *compose.Project) {
		s := p.Service(name)
		m(s)
		s.Hash = HashOf(*s)
	}
}

// RunningAs is the observed container of replica n of svc, created by
// lockstep at commit from exactly svc's configuration.
func RunningAs(p *compose.Project, service string, n int, commit string) compose.Container {
	s := p.Service(service)
	ids := map[string]string{ImgDB: IDDB, ImgWebA: IDWebA, ImgWebB: IDWebB, ImgJob: IDJob}
	c := compose.Container{
		ID:         fmt.Sprintf("%s%d%s", service, n, strings.Repeat("0", 60)),
		Name:       s.ContainerNameFor(p.Name, n),
		Service:    service,
		Number:     n,
		State:      "running",
		Image:      s.Image,
		ImageID:    ids[s.Image],
		Hash:       s.Hash,
		ConfigHash: s.ConfigHash,
		SpecHash:   s.SpecHash,
		Commit:     commit,
		WorkingDir: "/var/lib/lockstep/releases/prod/" + commit,
	}
	if s.Healthcheck {
		c.Health = "healthy"
	}
	if s.Networking != nil {
		// Wired as a create wires it, plus the short ID the engine adds.
		c.Networks = map[string]compose.Endpoint{}
		for name, ep := range s.Networking.EndpointsConfig {
			key := strings.TrimPrefix(name, p.Name+"_")
			c.Networks[name] = compose.Endpoint{NetworkID: NetworkID(key), Aliases: append(slices.Clone(ep.Aliases), c.ID[:12])}
		}
	}
	if service == "migrate" {
		c.State = "exited"
	}
	return c
}

// Converged is what the engine has once p was applied at its commit.
func Converged(p *compose.Project) compose.Observed {
	o := compose.Observed{Project: p.Name, Images: map[string]string{}}
	ids := map[string]string{ImgDB: IDDB, ImgWebA: IDWebA, ImgWebB: IDWebB, ImgJob: IDJob}
	for _, n := range p.Networks {
		if !n.External {
			o.Networks = append(o.Networks, compose.ObservedNetwork{ID: NetworkID(n.Key), Name: n.Name, Labels: map[string]string{
				compose.LabelProject: p.Name, compose.LabelNetwork: n.Key, compose.LabelHash: n.Hash,
			}})
		}
	}
	for _, v := range p.Volumes {
		if !v.External {
			o.Volumes = append(o.Volumes, compose.ObservedVolume{Name: v.Name, Labels: map[string]string{compose.LabelProject: p.Name}})
		}
	}
	for _, s := range p.Services {
		o.Images[s.Image] = ids[s.Image]
		for n := 1; n <= s.Replicas; n++ {
			o.Containers = append(o.Containers, RunningAs(p, s.Name, n, p.Commit))
		}
	}
	return o
}

// ObservedContainer returns a pointer to the observed container of service#n.
func ObservedContainer(o *compose.Observed, service string, n int) *compose.Container {
	for i := range o.Containers {
		if o.Containers[i].Service == service && o.Containers[i].Number == n {
			return &o.Containers[i]
		}
	}
	panic(fmt.Sprintf("fixture has no container %s#%d", service, n))
}
