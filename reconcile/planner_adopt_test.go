package reconcile

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"

	"github.com/lockstep-gitops/lockstep/compose"
	"github.com/lockstep-gitops/lockstep/reconcile/internal/fake"
)

// composeNetHash is the Docker Compose config-hash the fixture's default
// network has in the compose files, and on the network Compose created.
const composeNetHash = "c0ffee0123456789abcdef"

// adoptProject is the fixture project with Compose's network config-hash
// set, changed by mods.
func adoptProject(mods ...func(*compose.Project)) *compose.Project {
	return fake.Project(append([]func(*compose.Project){func(p *compose.Project) {
		p.Networks[0].ConfigHash = composeNetHash
	}}, mods...)...)
}

// composeMade is what the engine has once Docker Compose deployed p from a
// compose directory on the host: the same containers, config-hash and
// images, but no lockstep labels, and networks without lockstep.hash; a
// container's Spec is what it was created with (its binds from /srv/app).
func composeMade(p *compose.Project) compose.Observed {
	o := fake.Converged(p)
	for i := range o.Containers {
		c := &o.Containers[i]
		c.Hash, c.Commit, c.WorkingDir = "", "", "/srv/app"
		spec := compose.SpecOf(p.Service(c.Service))
		for j, m := range spec.Mounts {
			if m.Type == "bind" && strings.HasPrefix(m.Source, p.ReleaseDir) {
				spec.Mounts[j].Source = "/srv/app" + strings.TrimPrefix(m.Source, p.ReleaseDir)
				// Compose's config-hash covers the absolute bind source.
				c.ConfigHash = fake.SHA("config", c.Service, "/srv/app")
			}
		}
		c.Spec = &spec
	}
	for i := range o.Networks {
		delete(o.Networks[i].Labels, compose.LabelHash)
		o.Networks[i].Labels[compose.LabelConfigHash] = composeNetHash
		o.Networks[i].Driver = "bridge"
	}
	for i := range o.Volumes {
		o.Volumes[i].Labels[compose.LabelVolume] = "data"
		o.Volumes[i].Driver = "local"
	}
	return o
}

// withBind gives web a bind from the release (as ./web/app.conf becomes)
// whose Compose-made container binds the same file from /srv/app.
func withBind(p *compose.Project) {
	web := p.Service("web")
	web.Host.Binds = append(web.Host.Binds, p.ReleaseDir+"/web/app.conf:/etc/app.conf:ro")
	web.ConfigHash = fake.SHA("config", "web", "with the release path")
	web.Hash = fake.HashOf(*web)
}

func TestBuildPlanAdoption(t *testing.T) {
	tests := []struct {
		name     string
		desired  *compose.Project
		observed func(p *compose.Project) compose.Observed
		want     []string
		warnings []string
	}{
		{
			name:     "equal configuration is adopted without a restart, networks and volumes too",
			desired:  adoptProject(),
			observed: composeMade,
			want: []string{
				"adopt prod_default: " + reasonAdoptNetworkKept,
				"adopt prod_data: " + reasonAdoptVolumeKept,
				"adopt prod-db-1: " + reasonAdoptKept,
				"adopt prod-migrate-1: " + reasonAdoptKept,
				"adopt prod-web-1: " + reasonAdoptKept,
			},
		},
		{
			name:     "a bind from the host dir is recreated into the release, the rest is adopted",
			desired:  adoptProject(withBind),
			observed: composeMade,
			want: []string{
				"adopt prod_default: " + reasonAdoptNetworkKept,
				"adopt prod_data: " + reasonAdoptVolumeKept,
				"adopt prod-db-1: " + reasonAdoptKept,
				"adopt prod-migrate-1: " + reasonAdoptKept,
				"recreate prod-web-1: adopt: bind source moves from /srv/app/web/app.conf to the immutable release [stop-first] [adopt]",
			},
		},
		{
			// Compose's config-hash names a config by its key, not its file:
			// the container hashes equal while binding the operator's copy.
			name:    "a config file bound from the host dir with an equal config-hash is still recreated into the release",
			desired: adoptProject(withBind),
			observed: func(p *compose.Project) compose.Observed {
				o := composeMade(p)
				fake.ObservedContainer(&o, "web", 1).ConfigHash = p.Service("web").ConfigHash
				return o
			},
			want: []string{
				"adopt prod_default: " + reasonAdoptNetworkKept,
				"adopt prod_data: " + reasonAdoptVolumeKept,
				"adopt prod-db-1: " + reasonAdoptKept,
				"adopt prod-migrate-1: " + reasonAdoptKept,
				"recreate prod-web-1: adopt: bind source moves from /srv/app/web/app.conf to the immutable release [stop-first] [adopt]",
			},
		},
		{
			name: "environment, ports and command differences are named, never the values",
			desired: adoptProject(fake.ModService("db", func(s *compose.Service) {
				s.ConfigHash = "other"
				s.Config.Env = []string{"POSTGRES_PASSWORD=new-secret", "TZ=UTC", "ADDED=1"}
				s.Config.Cmd = []string{"postgres", "-c", "password=x"}
			})),
			observed: func(*compose.Project) compose.Observed {
				o := composeMade(adoptProject())
				c := fake.ObservedContainer(&o, "db", 1)
				c.Spec.Env = compose.EnvDigests([]string{"POSTGRES_PASSWORD=old-secret", "TZ=UTC", "PATH=/usr/bin"})
				c.Spec.Ports = []string{"5432:5432/tcp"}
				c.Spec.Cmd = []string{"postgres"}
				return o
			},
			want: []string{
				"adopt prod_default: " + reasonAdoptNetworkKept,
				"adopt prod_data: " + reasonAdoptVolumeKept,
				"recreate prod-db-1: adopt: environment POSTGRES_PASSWORD changed; adopt: environment ADDED added; adopt: published ports 5432:5432/tcp -> none; adopt: command changed [stop-first] [adopt]",
				"adopt prod-migrate-1: " + reasonAdoptKept,
				"adopt prod-web-1: " + reasonAdoptKept,
			},
		},
		{
			name:    "another image, and no explanation found: the config-hash fallback",
			desired: adoptProject(fake.ModService("web", func(s *compose.Service) { s.ConfigHash = "0123456789abcdef0000" })),
			observed: func(p *compose.Project) compose.Observed {
				o := composeMade(p)
				c := fake.ObservedContainer(&o, "web", 1)
				c.ConfigHash, c.Image = "fedcba98765432100000", "web:old"
				return o
			},
			want: []string{
				"adopt prod_default: " + reasonAdoptNetworkKept,
				"adopt prod_data: " + reasonAdoptVolumeKept,
				"adopt prod-db-1: " + reasonAdoptKept,
				"adopt prod-migrate-1: " + reasonAdoptKept,
				"recreate prod-web-1: adopt: image web:old -> 127.0.0.1:5000/web:aaa; adopt: configuration differs from the compose files (config-hash fedcba987654 -> 0123456789ab) [stop-first] [adopt]",
			},
		},
		{
			name:    "the tag now names another image: recreated",
			desired: adoptProject(),
			observed: func(p *compose.Project) compose.Observed {
				o := composeMade(p)
				o.Images[fake.ImgDB] = fake.IDWebB
				return o
			},
			want: []string{
				"adopt prod_default: " + reasonAdoptNetworkKept,
				"adopt prod_data: " + reasonAdoptVolumeKept,
				"recreate prod-db-1: adopt: image 127.0.0.1:5000/db:16 updated (111111111111 -> bbbbbbbbbbbb) [stop-first] [adopt]",
				"adopt prod-migrate-1: " + reasonAdoptKept,
				"adopt prod-web-1: " + reasonAdoptKept,
			},
		},
		{
			name:    "an adopted container that is stopped is adopted, then started",
			desired: adoptProject(),
			observed: func(p *compose.Project) compose.Observed {
				o := composeMade(p)
				c := fake.ObservedContainer(&o, "web", 1)
				c.State, c.ExitCode = "exited", 0
				return o
			},
			want: []string{
				"adopt prod_default: " + reasonAdoptNetworkKept,
				"adopt prod_data: " + reasonAdoptVolumeKept,
				"adopt prod-db-1: " + reasonAdoptKept,
				"adopt prod-migrate-1: " + reasonAdoptKept,
				"adopt prod-web-1: " + reasonAdoptKept,
				"start prod-web-1: container stopped (exited 0) [drift]",
			},
		},
		{
			name:    "a network Compose created without a config-hash label, equal settings: adopted",
			desired: adoptProject(),
			observed: func(p *compose.Project) compose.Observed {
				o := composeMade(p)
				delete(o.Networks[0].Labels, compose.LabelConfigHash)
				return o
			},
			want: []string{
				"adopt prod_default: " + reasonAdoptNetworkKept,
				"adopt prod_data: " + reasonAdoptVolumeKept,
				"adopt prod-db-1: " + reasonAdoptKept,
				"adopt prod-migrate-1: " + reasonAdoptKept,
				"adopt prod-web-1: " + reasonAdoptKept,
			},
		},
		{
			name:    "a network and a volume Compose created with other settings: warned, precisely",
			desired: adoptProject(),
			observed: func(p *compose.Project) compose.Observed {
				o := composeMade(p)
				o.Networks[0].Labels[compose.LabelConfigHash] = "feedface"
				o.Networks[0].Internal = true
				o.Networks[0].Labels["team"] = "a"
				o.Volumes[0].Options = map[string]string{"type": "nfs"}
				return o
			},
			want: []string{
				"adopt prod-db-1: " + reasonAdoptKept,
				"adopt prod-migrate-1: " + reasonAdoptKept,
				"adopt prod-web-1: " + reasonAdoptKept,
			},
			warnings: []string{
				`network "prod_default" (networks.default) differs from the compose files (internal true -> false, labels team); lockstep does not recreate a network containers use: stop the project (docker compose -p prod down, volumes are kept) and the next pass recreates it`,
				`volume "prod_data" (volumes.data) differs from the compose files (driver_opts type); lockstep never recreates a volume (its data would be lost) and uses it as it is: to change it, back its data up, stop the project, remove it (docker volume rm prod_data) and the next pass creates it`,
			},
		},
		{
			name:    "a config-hash that differs while the settings are equal is no reason to warn",
			desired: adoptProject(),
			observed: func(p *compose.Project) compose.Observed {
				o := composeMade(p)
				o.Networks[0].Labels[compose.LabelConfigHash] = "feedface"
				return o
			},
			want: []string{
				"adopt prod_default: " + reasonAdoptNetworkKept,
				"adopt prod_data: " + reasonAdoptVolumeKept,
				"adopt prod-db-1: " + reasonAdoptKept,
				"adopt prod-migrate-1: " + reasonAdoptKept,
				"adopt prod-web-1: " + reasonAdoptKept,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plan := BuildPlan(tt.desired, tt.observed(tt.desired))
			if got := briefs(plan); !slices.Equal(got, tt.want) {
				t.Errorf("actions:\n got %q\nwant %q", got, tt.want)
			}
			if !slices.Equal(plan.Warnings, tt.warnings) {
				t.Errorf("warnings:\n got %q\nwant %q", plan.Warnings, tt.warnings)
			}
			for _, a := range plan.Actions {
				if a.Adopt && a.Drift {
					t.Errorf("an adoption is never drift: %s", brief(a))
				}
				for _, r := range a.Reasons {
					if strings.Contains(r, "secret") {
						t.Errorf("a value reached the plan: %q", r)
					}
				}
			}
		})
	}
}

// The pass records what apply adopted and lays the record over the next
// observation: the pass after an adoption has nothing to do, and a later
// revision that changes the service recreates it like any container of
// lockstep's.
func TestAdoptedThenNextPassIsANoOp(t *testing.T) {
	p := adoptProject(withBind)
	o := composeMade(p)
	plan := BuildPlan(p, o)
	at := time.Date(2026, 12, 2, 1, 0, 0, 0, time.UTC)
	// Apply as it would: the recreate of web gives it a lockstep container.
	list := AdoptionsAfter(p, o, nil, plan.Actions, at)
	if len(list) != 2 || list[0].Service != "db" || list[0].Hash != p.Service("db").Hash || list[0].Commit != p.Commit {
		t.Fatalf("adoption record: %+v", list)
	}
	next := composeMade(p)
	web := fake.ObservedContainer(&next, "web", 1)
	*web = fake.RunningAs(p, "web", 1, p.Commit)
	web.ID = "recreated-web"
	OverlayAdopted(&next, list)
	if again := BuildPlan(p, next); !again.Empty() || len(again.Warnings) != 0 {
		t.Fatalf("the pass after the adoption: %q, warnings %q", briefs(again), again.Warnings)
	}
	if kept := AdoptionsAfter(p, next, list, nil, at.Add(time.Hour)); !slices.Equal(kept, list) {
		t.Fatalf("the record changed on a no-op pass: %+v", kept)
	}

	// A new revision changes db: recreated as lockstep's, not as drift.
	p2 := adoptProject(withBind, func(p *compose.Project) { p.Commit = fake.CommitB },
		fake.ModService("db", func(s *compose.Service) { s.Config.Env = []string{"A=1"}; s.ConfigHash = "db-v2-hash-0000" }))
	got := briefs(BuildPlan(p2, next)) // next already carries the overlay
	if len(got) != 1 || !strings.HasPrefix(got[0], "recreate prod-db-1: configuration changed (config-hash ") || strings.Contains(got[0], "[drift]") || strings.Contains(got[0], "adopt") {
		t.Fatalf("a changed adopted service: %q", got)
	}

	// Re-created by Compose since (a new ID): adopted afresh, not mistaken.
	again := composeMade(p)
	fake.ObservedContainer(&again, "db", 1).ID = "made-again-by-compose"
	OverlayAdopted(&again, list)
	if c := fake.ObservedContainer(&again, "db", 1); c.Hash != "" {
		t.Fatalf("a container of another ID got the record's hash: %+v", c)
	}
}

func TestAdoptionText(t *testing.T) {
	p := adoptProject(withBind)
	plan := BuildPlan(p, composeMade(p))
	var b bytes.Buffer
	if err := plan.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"  = adopt network prod_default (" + reasonAdoptNetworkKept + ")\n",
		"  = adopt db (prod-db-1)\n      " + reasonAdoptKept + "\n",
		"  ~ recreate web (prod-web-1) [stop-first, adopt]\n      adopt: bind source moves from /srv/app/web/app.conf to the immutable release\n",
		"  5 changes: 4 to adopt, 1 to recreate\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("plan text lacks %q:\n%s", want, b.String())
		}
	}
}

// The Spec of a service sees binds of both APIs and named volumes alike.
func TestSpecOfMounts(t *testing.T) {
	s := fake.Service("web", fake.ImgWebA, func(s *compose.Service) {
		s.Host.Binds = []string{"/rel/a.conf:/etc/a.conf:ro", "prod_data:/data:rw"}
		s.Config.Env = []string{"A=1", "UNSET"}
		s.Config.Cmd = container.Config{Cmd: []string{"run"}}.Cmd
	})
	spec := compose.SpecOf(&s)
	want := []compose.SpecMount{{Type: "volume", Source: "prod_data", Target: "/data"}, {Type: "bind", Source: "/rel/a.conf", Target: "/etc/a.conf"}}
	if !slices.Equal(spec.Mounts, want) {
		t.Errorf("mounts: %+v", spec.Mounts)
	}
	if len(spec.Env) != 1 || spec.Env["A"] != compose.EnvDigest("1") || !slices.Equal(spec.Cmd, []string{"run"}) {
		t.Errorf("env %v, cmd %v", spec.Env, spec.Cmd)
	}
}
