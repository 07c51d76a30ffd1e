package reconcile

import (
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/lockstep-gitops/lockstep/compose"
	"github.com/lockstep-gitops/lockstep/reconcile/internal/fake"
)

func TestBuildPlan(t *testing.T) {
	// base is the project at fake.CommitA, converged.
	base := fake.Project()
	atB := func(p *compose.Project) { p.Commit = fake.CommitB }

	tests := []struct {
		name     string
		desired  *compose.Project
		observed func() compose.Observed
		want     []string
		warnings []string // each warning must contain the matching substring
	}{
		{
			name:     "fresh project",
			desired:  fake.Project(),
			observed: func() compose.Observed { return compose.Observed{Project: "prod"} },
			want: []string{
				"pull 127.0.0.1:5000/db:16: not present locally; used by db",
				"pull 127.0.0.1:5000/migrate:aaa: not present locally; used by migrate",
				"pull 127.0.0.1:5000/web:aaa: not present locally; used by web",
				"create-network prod_default: network does not exist",
				"create-volume prod_data: volume does not exist",
				"create prod-db-1: new service",
				"create prod-migrate-1: new service",
				"create prod-web-1: new service",
			},
		},
		{
			name:     "converged project is a no-op (completed one-shot is not restarted)",
			desired:  fake.Project(),
			observed: func() compose.Observed { return fake.Converged(base) },
			want:     []string{},
		},
		{
			name: "image tag change recreates only that service",
			desired: fake.Project(atB, fake.ModService("web", func(s *compose.Service) {
				s.Image = fake.ImgWebB
				s.ConfigHash = fake.SHA("config", "web", fake.ImgWebB)
			})),
			observed: func() compose.Observed {
				o := fake.Converged(base)
				o.Images[fake.ImgWebB] = fake.IDWebB
				return o
			},
			want: []string{
				"recreate prod-web-1: image 127.0.0.1:5000/web:aaa -> 127.0.0.1:5000/web:bbb; configuration changed (config-hash " +
					short(fake.SHA("config", "web", fake.ImgWebA)) + " -> " + short(fake.SHA("config", "web", fake.ImgWebB)) + ") [stop-first]",
			},
		},
		{
			name: "new image tag not present is pulled first",
			desired: fake.Project(atB, fake.ModService("web", func(s *compose.Service) {
				s.Image = fake.ImgWebB
				s.ConfigHash = fake.SHA("config", "web", fake.ImgWebB)
			})),
			observed: func() compose.Observed {
				return fake.Converged(base)
			},
			want: []string{
				"pull 127.0.0.1:5000/web:bbb: not present locally; used by web",
				"recreate prod-web-1: image 127.0.0.1:5000/web:aaa -> 127.0.0.1:5000/web:bbb; configuration changed (config-hash " +
					short(fake.SHA("config", "web", fake.ImgWebA)) + " -> " + short(fake.SHA("config", "web", fake.ImgWebB)) + ") [stop-first]",
			},
		},
		{
			name:    "configuration change",
			desired: fake.Project(atB, fake.ModService("db", func(s *compose.Service) { s.ConfigHash = "f00dcafe0000111122223333" })),
			observed: func() compose.Observed {
				return fake.Converged(base)
			},
			want: []string{
				"recreate prod-db-1: configuration changed (config-hash " + short(fake.SHA("config", "db", fake.ImgDB)) + " -> f00dcafe0000) [stop-first]",
			},
		},
		{
			name:    "file change named from PriorFiles",
			desired: fake.Project(atB, fake.ModService("web", func(s *compose.Service) { s.Files[0].Digest = "sha256:conf2" })),
			observed: func() compose.Observed {
				o := fake.Converged(base)
				fake.ObservedContainer(&o, "web", 1).PriorFiles = map[string]string{"web/app.conf": "sha256:conf1"}
				return o
			},
			want: []string{"recreate prod-web-1: file web/app.conf changed [stop-first]"},
		},
		{
			// Compose's config-hash holds the absolute release dir; lockstep's
			// spec hash does not, so only the file is named.
			name: "moved release dir: config-hash differs, spec-hash equal, only the file is a reason",
			desired: fake.Project(atB, fake.ModService("web", func(s *compose.Service) {
				s.SpecHash = "5bec0000aaaa"
				s.ConfigHash = "c0c0beef0000"
				s.Files[0].Digest = "sha256:conf2"
			})),
			observed: func() compose.Observed {
				o := fake.Converged(base)
				c := fake.ObservedContainer(&o, "web", 1)
				c.SpecHash = "5bec0000aaaa"
				c.PriorFiles = map[string]string{"web/app.conf": "sha256:conf1"}
				return o
			},
			want: []string{"recreate prod-web-1: file web/app.conf changed [stop-first]"},
		},
		{
			name: "spec-hash change is the configuration reason",
			desired: fake.Project(atB, fake.ModService("web", func(s *compose.Service) {
				s.SpecHash = "5bec0000bbbb"
				s.ConfigHash = "c0c0beef1111" // moves Hash in the fake, as SpecHash does in compose
			})),
			observed: func() compose.Observed {
				o := fake.Converged(base)
				fake.ObservedContainer(&o, "web", 1).SpecHash = "5bec0000aaaa"
				return o
			},
			want: []string{"recreate prod-web-1: configuration changed (spec-hash 5bec0000aaaa -> 5bec0000bbbb) [stop-first]"},
		},
		{
			// Before lockstep.spec-hash, config-hash held lockstep's spec hash.
			name: "container of an older lockstep: its config-hash is compared with the spec hash",
			desired: fake.Project(atB, fake.ModService("web", func(s *compose.Service) {
				s.SpecHash = s.ConfigHash
				s.ConfigHash = "c0c0beef0000"
				s.Files[0].Digest = "sha256:conf2"
			})),
			observed: func() compose.Observed {
				o := fake.Converged(base)
				fake.ObservedContainer(&o, "web", 1).PriorFiles = map[string]string{"web/app.conf": "sha256:conf1"}
				return o
			},
			want: []string{"recreate prod-web-1: file web/app.conf changed [stop-first]"},
		},
		{
			name:    "encrypted file change shows keyed digests, never the value",
			desired: fake.Project(atB, fake.ModService("web", func(s *compose.Service) { s.Files[0].Digest = "hmac-sha256:7a8b9c0d1e2f3a4b5c6d" })),
			observed: func() compose.Observed {
				o := fake.Converged(base)
				fake.ObservedContainer(&o, "web", 1).PriorFiles = map[string]string{"web/app.conf": "hmac-sha256:1a2b3c4d5e6f7a8b9c0d"}
				return o
			},
			want: []string{"recreate prod-web-1: file web/app.conf changed (value 1a2b3c4d5e6f -> 7a8b9c0d1e2f) [stop-first]"},
		},
		{
			name: "file added and file no longer used",
			desired: fake.Project(atB, fake.ModService("web", func(s *compose.Service) {
				s.Files = append(s.Files, compose.File{Path: "web/extra.conf", Digest: "sha256:extra"})
			})),
			observed: func() compose.Observed {
				o := fake.Converged(base)
				fake.ObservedContainer(&o, "web", 1).PriorFiles = map[string]string{"web/app.conf": "sha256:conf1", "web/old.conf": "sha256:old"}
				return o
			},
			want: []string{"recreate prod-web-1: file web/extra.conf added; file web/old.conf no longer used [stop-first]"},
		},
		{
			name:    "file change without PriorFiles falls back to effective configuration",
			desired: fake.Project(atB, fake.ModService("web", func(s *compose.Service) { s.Files[0].Digest = "sha256:conf2" })),
			observed: func() compose.Observed {
				return fake.Converged(base)
			},
			want: []string{"recreate prod-web-1: effective configuration changed [stop-first]"},
		},
		{
			name:    "container not created by lockstep",
			desired: fake.Project(),
			observed: func() compose.Observed {
				o := fake.Converged(base)
				c := fake.ObservedContainer(&o, "db", 1)
				c.Hash, c.ConfigHash, c.Commit = "", "0123456789abcdef", ""
				return o
			},
			want: []string{
				"adopt prod_data: " + reasonAdoptVolumeKept,
				"recreate prod-db-1: adopt: configuration differs from the compose files (config-hash 0123456789ab -> " +
					short(fake.SHA("config", "db", fake.ImgDB)) + ") [stop-first] [adopt]",
			},
		},
		{
			name:    "same tag now names another image",
			desired: fake.Project(),
			observed: func() compose.Observed {
				o := fake.Converged(base)
				o.Images[fake.ImgWebA] = fake.IDWebB
				return o
			},
			want: []string{"recreate prod-web-1: image 127.0.0.1:5000/web:aaa updated (aaaaaaaaaaaa -> bbbbbbbbbbbb) [stop-first]"},
		},
		{
			name:    "container removed by hand at the same revision is drift",
			desired: fake.Project(),
			observed: func() compose.Observed {
				o := fake.Converged(base)
				o.Containers = o.Containers[:2] // db, migrate
				return o
			},
			want: []string{"create prod-web-1: container missing [drift]"},
		},
		{
			name: "service added by a new revision is not drift",
			desired: fake.Project(atB, func(p *compose.Project) {
				p.Services = append(p.Services, fake.Service("worker", fake.ImgWebA))
			}),
			observed: func() compose.Observed { return fake.Converged(base) },
			want:     []string{"create prod-worker-1: new service"},
		},
		{
			name:    "stopped container is started",
			desired: fake.Project(),
			observed: func() compose.Observed {
				o := fake.Converged(base)
				c := fake.ObservedContainer(&o, "web", 1)
				c.State, c.ExitCode = "exited", 137
				return o
			},
			want: []string{"start prod-web-1: container stopped (exited 137) [drift]"},
		},
		{
			name:    "failed one-shot is started again",
			desired: fake.Project(),
			observed: func() compose.Observed {
				o := fake.Converged(base)
				fake.ObservedContainer(&o, "migrate", 1).ExitCode = 1
				return o
			},
			want: []string{"start prod-migrate-1: container stopped (exited 1) [drift]"},
		},
		{
			name:    "exited service nobody waits on is started",
			desired: fake.Project(),
			observed: func() compose.Observed {
				o := fake.Converged(base)
				c := fake.ObservedContainer(&o, "db", 1)
				c.State, c.Health = "exited", ""
				return o
			},
			want: []string{"start prod-db-1: container stopped (exited 0) [drift]"},
		},
		{
			name:    "created but never started (interrupted apply) is started",
			desired: fake.Project(),
			observed: func() compose.Observed {
				o := fake.Converged(base)
				fake.ObservedContainer(&o, "web", 1).State = "created"
				return o
			},
			want: []string{"start prod-web-1: container created but never started"},
		},
		{
			name:    "duplicates from an interrupted recreate: keep the new one, remove the old, fix the name",
			desired: fake.Project(atB, fake.ModService("db", func(s *compose.Service) { s.ConfigHash = "f00dcafe0000111122223333" })),
			observed: func() compose.Observed {
				o := fake.Converged(base)
				old := *fake.ObservedContainer(&o, "db", 1)
				fresh := old
				fresh.ID = "abcdef0123456789" + strings.Repeat("0", 48)
				fresh.Name = old.ID[:12] + "_prod-db-1"
				fresh.State, fresh.Health = "created", ""
				fresh.ConfigHash = "f00dcafe0000111122223333"
				fresh.Hash = fake.Project(atB, fake.ModService("db", func(s *compose.Service) { s.ConfigHash = "f00dcafe0000111122223333" })).Service("db").Hash
				fresh.Commit = fake.CommitB
				o.Containers = append(o.Containers, fresh)
				return o
			},
			want: []string{
				"remove prod-db-1: duplicate container for replica 1 (left by an interrupted apply)",
				"recreate prod-db-1: container name db1000000000_prod-db-1, want prod-db-1 (left by an interrupted apply) [stop-first]",
			},
		},
		{
			name:    "duplicates with the right hash: keep the running one",
			desired: fake.Project(),
			observed: func() compose.Observed {
				o := fake.Converged(base)
				dup := *fake.ObservedContainer(&o, "web", 1)
				dup.ID, dup.Name, dup.State, dup.ExitCode = "0000dup", "prod-web-1-dup", "exited", 0
				o.Containers = append(o.Containers, dup)
				return o
			},
			want: []string{"remove prod-web-1-dup: duplicate container for replica 1 (left by an interrupted apply)"},
		},
		{
			name:    "renamed by hand",
			desired: fake.Project(),
			observed: func() compose.Observed {
				o := fake.Converged(base)
				fake.ObservedContainer(&o, "web", 1).Name = "my-web"
				return o
			},
			want: []string{"recreate prod-web-1: container name my-web, want prod-web-1 [stop-first] [drift]"},
		},
		{
			name: "orphans are removed before services are created",
			desired: fake.Project(atB, func(p *compose.Project) {
				p.Services = append(p.Services, fake.Service("worker", fake.ImgWebA))
			}),
			observed: func() compose.Observed {
				o := fake.Converged(base)
				o.Containers = append(o.Containers,
					compose.Container{ID: "old1", Name: "prod-old-1", Service: "old", Number: 1, State: "running"},
					compose.Container{ID: "nolabel", Name: "stray", Service: "", State: "exited"},
				)
				return o
			},
			want: []string{
				"remove stray: container has the project label but no com.docker.compose.service label",
				`remove prod-old-1: service "old" removed from the compose files`,
				"create prod-worker-1: new service",
			},
		},
		{
			name:    "scale up by a new revision",
			desired: fake.Project(atB, fake.ModService("db", func(s *compose.Service) { s.Replicas = 3 })),
			observed: func() compose.Observed {
				return fake.Converged(base)
			},
			want: []string{"create prod-db-2: new replica", "create prod-db-3: new replica"},
		},
		{
			name: "scale down removes the highest numbers last in the plan",
			desired: fake.Project(atB, fake.ModService("web", func(s *compose.Service) {
				s.Image = fake.ImgWebB
				s.ConfigHash = fake.SHA("config", "web", fake.ImgWebB)
			})),
			observed: func() compose.Observed {
				o := fake.Converged(fake.Project(fake.ModService("web", func(s *compose.Service) { s.Replicas = 3 })))
				o.Images[fake.ImgWebB] = fake.IDWebB
				return o
			},
			want: []string{
				"recreate prod-web-1: image 127.0.0.1:5000/web:aaa -> 127.0.0.1:5000/web:bbb; configuration changed (config-hash " +
					short(fake.SHA("config", "web", fake.ImgWebA)) + " -> " + short(fake.SHA("config", "web", fake.ImgWebB)) + ") [stop-first]",
				"remove prod-web-3: scaled down to 1",
				"remove prod-web-2: scaled down to 1",
			},
		},
		{
			name:     "scale to zero removes early and skips the pull",
			desired:  fake.Project(atB, fake.ModService("web", func(s *compose.Service) { s.Replicas = 0; s.Image = fake.ImgWebB })),
			observed: func() compose.Observed { return fake.Converged(base) },
			want:     []string{"remove prod-web-1: scaled down to 0"},
		},
		{
			name: "external network missing is a warning, never created",
			desired: fake.Project(func(p *compose.Project) {
				p.Networks = append(p.Networks, compose.Network{Key: "edge", Name: "traefik", External: true})
			}),
			observed: func() compose.Observed { return fake.Converged(base) },
			want:     []string{},
			warnings: []string{`external network "traefik" (networks.edge) does not exist`},
		},
		{
			name: "external network and volume present are used as they are",
			desired: fake.Project(func(p *compose.Project) {
				p.Networks = append(p.Networks, compose.Network{Key: "edge", Name: "traefik", External: true})
				p.Volumes = append(p.Volumes, compose.Volume{Key: "certs", Name: "certs", External: true})
			}),
			observed: func() compose.Observed {
				o := fake.Converged(base)
				o.Networks = append(o.Networks, compose.ObservedNetwork{ID: "n2", Name: "traefik"})
				o.Volumes = append(o.Volumes, compose.ObservedVolume{Name: "certs"})
				return o
			},
			want: []string{},
		},
		{
			name: "external volume missing",
			desired: fake.Project(func(p *compose.Project) {
				p.Volumes = append(p.Volumes, compose.Volume{Key: "certs", Name: "certs", External: true})
			}),
			observed: func() compose.Observed { return fake.Converged(base) },
			want:     []string{},
			warnings: []string{`external volume "certs" (volumes.certs) does not exist`},
		},
		{
			name:    "network settings changed or foreign network",
			desired: fake.Project(func(p *compose.Project) { p.Networks[0].Hash = "nethash-new-0000000000" }),
			observed: func() compose.Observed {
				o := fake.Converged(base)
				o.Volumes[0].Labels = nil
				return o
			},
			want: []string{},
			warnings: []string{
				`network "prod_default" (networks.default) differs from the compose files (lockstep.hash nethash-defa -> nethash-new-)`,
				`volume "prod_data" (volumes.data) exists but was not created for project "prod"`,
			},
		},
		{
			name:    "network not created for this project",
			desired: fake.Project(),
			observed: func() compose.Observed {
				o := fake.Converged(base)
				o.Networks[0].Labels = map[string]string{compose.LabelProject: "other", compose.LabelNetwork: "default"}
				return o
			},
			want:     []string{},
			warnings: []string{`network "prod_default" (networks.default) exists but was not created for project "prod" (label com.docker.compose.project="other")`},
		},
		{
			name: "pull policies",
			desired: fake.Project(
				fake.ModService("db", func(s *compose.Service) { s.PullPolicy = compose.PullAlways }),
				fake.ModService("migrate", func(s *compose.Service) { s.PullPolicy = compose.PullNever }),
				fake.ModService("web", func(s *compose.Service) { s.PullPolicy = compose.PullNever }),
				func(p *compose.Project) {
					p.Services = append(p.Services,
						fake.Service("worker", fake.ImgWebA), // missing policy shares web's image: it is pulled
						fake.Service("cron", fake.ImgWebB, func(s *compose.Service) { s.PullPolicy = compose.PullNever }), // never and absent
					)
				}),
			observed: func() compose.Observed {
				o := fake.Converged(base)
				delete(o.Images, fake.ImgWebA)
				delete(o.Images, fake.ImgJob)
				return o
			},
			want: []string{
				"pull 127.0.0.1:5000/db:16: pull_policy is always; used by db",
				"pull 127.0.0.1:5000/web:aaa: not present locally; used by web, worker",
				"create prod-worker-1: container missing [drift]",
				"create prod-cron-1: container missing [drift]",
			},
			warnings: []string{
				"image 127.0.0.1:5000/migrate:aaa is not present and pull_policy is never (services: migrate)",
				"image 127.0.0.1:5000/web:bbb is not present and pull_policy is never (services: cron)",
			},
		},
		{
			name: "start-first without published ports",
			desired: fake.Project(atB, fake.ModService("db", func(s *compose.Service) {
				s.UpdateOrder = compose.StartFirst
				s.ConfigHash = "f00dcafe0000111122223333"
			})),
			observed: func() compose.Observed { return fake.Converged(base) },
			want: []string{
				"recreate prod-db-1: configuration changed (config-hash " + short(fake.SHA("config", "db", fake.ImgDB)) + " -> f00dcafe0000) [start-first]",
			},
		},
		{
			name: "start-first falls back to stop-first with published ports",
			desired: fake.Project(atB, fake.ModService("web", func(s *compose.Service) {
				s.UpdateOrder = compose.StartFirst
				s.Replicas = 2
				s.Files[0].Digest = "sha256:conf2"
			})),
			observed: func() compose.Observed {
				return fake.Converged(fake.Project(fake.ModService("web", func(s *compose.Service) { s.Replicas = 2 })))
			},
			want: []string{
				"recreate prod-web-1: effective configuration changed [stop-first]",
				"recreate prod-web-2: effective configuration changed [stop-first]",
			},
			warnings: []string{"service web: update_config.order start-first is not possible because it publishes host ports"},
		},
		{
			name: "start-first falls back to stop-first with container_name",
			desired: fake.Project(atB, fake.ModService("db", func(s *compose.Service) {
				s.UpdateOrder = compose.StartFirst
				s.ContainerName = "database"
				s.ConfigHash = "f00dcafe0000111122223333"
			})),
			observed: func() compose.Observed {
				return fake.Converged(fake.Project(fake.ModService("db", func(s *compose.Service) { s.ContainerName = "database" })))
			},
			want: []string{
				"recreate database: configuration changed (config-hash " + short(fake.SHA("config", "db", fake.ImgDB)) + " -> f00dcafe0000) [stop-first]",
			},
			warnings: []string{`service db: update_config.order start-first is not possible because it sets container_name "database"`},
		},
		{
			name: "restart: true restarts a running dependent when its dependency is recreated",
			desired: fake.Project(atB,
				fake.ModService("db", func(s *compose.Service) { s.ConfigHash = "f00dcafe0000111122223333" }),
				func(p *compose.Project) {
					p.Services = append(p.Services, fake.Service("api", fake.ImgWebA, func(s *compose.Service) {
						s.DependsOn = []compose.Dependency{{Service: "db", Condition: compose.ConditionStarted, Restart: true, Required: true}}
					}))
				}),
			observed: func() compose.Observed {
				o := fake.Converged(base)
				o.Containers = append(o.Containers, fake.RunningAs(fake.Project(func(p *compose.Project) {
					p.Services = append(p.Services, fake.Service("api", fake.ImgWebA, func(s *compose.Service) {
						s.DependsOn = []compose.Dependency{{Service: "db", Condition: compose.ConditionStarted, Restart: true, Required: true}}
					}))
				}), "api", 1, fake.CommitA))
				return o
			},
			want: []string{
				"recreate prod-db-1: configuration changed (config-hash " + short(fake.SHA("config", "db", fake.ImgDB)) + " -> f00dcafe0000) [stop-first]",
				"restart prod-api-1: dependency db is replaced (restart: true)",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plan := BuildPlan(tt.desired, tt.observed())
			if got := briefs(plan); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("actions:\n got %q\nwant %q", got, tt.want)
			}
			if len(plan.Warnings) != len(tt.warnings) {
				t.Fatalf("warnings: got %q, want %d matching %q", plan.Warnings, len(tt.warnings), tt.warnings)
			}
			for i, w := range tt.warnings {
				if !strings.Contains(plan.Warnings[i], w) {
					t.Errorf("warning %d:\n got %q\nwant it to contain %q", i, plan.Warnings[i], w)
				}
			}
			for _, a := range plan.Actions {
				if a.Reasons == nil {
					t.Errorf("action %s has nil reasons", brief(a))
				}
				if a.Kind == ActRecreate || a.Kind == ActStart || a.Kind == ActRemove || a.Kind == ActRestart {
					if a.ContainerID == "" {
						t.Errorf("action %s has no container ID", brief(a))
					}
				}
			}
			if plan.Environment != "production" || plan.Project != "prod" || plan.Commit != tt.desired.Commit {
				t.Errorf("plan header = %q %q %q", plan.Environment, plan.Project, plan.Commit)
			}
		})
	}
}

func TestBuildPlanDeterministic(t *testing.T) {
	desired := fake.Project(
		func(p *compose.Project) { p.Commit = fake.CommitB },
		fake.ModService("web", func(s *compose.Service) {
			s.Image = fake.ImgWebB
			s.ConfigHash = fake.SHA("config", "web", fake.ImgWebB)
		}),
	)
	observed := fake.Converged(fake.Project(fake.ModService("web", func(s *compose.Service) { s.Replicas = 4 })))
	observed.Containers = append(observed.Containers,
		compose.Container{ID: "o1", Name: "prod-old-1", Service: "old", Number: 1, State: "running"},
		compose.Container{ID: "o2", Name: "prod-old-2", Service: "old", Number: 2, State: "running"},
		compose.Container{ID: "o3", Name: "prod-zzz-1", Service: "zzz", Number: 1, State: "running"},
	)
	want, err := json.Marshal(BuildPlan(desired, observed))
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 50; i++ {
		shuffled := observed
		shuffled.Containers = append([]compose.Container(nil), observed.Containers...)
		rng.Shuffle(len(shuffled.Containers), func(a, b int) {
			shuffled.Containers[a], shuffled.Containers[b] = shuffled.Containers[b], shuffled.Containers[a]
		})
		got, err := json.Marshal(BuildPlan(desired, shuffled))
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Fatalf("plan depends on the order of observed containers:\n got %s\nwant %s", got, want)
		}
	}
}

func TestBuildPlanDoesNotMutateInputs(t *testing.T) {
	desired := fake.Project(func(p *compose.Project) { p.Commit = fake.CommitB })
	observed := fake.Converged(fake.Project(fake.ModService("web", func(s *compose.Service) { s.Replicas = 3 })))
	observed.Containers[0], observed.Containers[4] = observed.Containers[4], observed.Containers[0]
	wantD := fake.Project(func(p *compose.Project) { p.Commit = fake.CommitB })
	before, _ := json.Marshal(observed)
	BuildPlan(desired, observed)
	after, _ := json.Marshal(observed)
	if string(before) != string(after) {
		t.Error("BuildPlan changed the observed snapshot")
	}
	if !reflect.DeepEqual(desired, wantD) {
		t.Error("BuildPlan changed the desired project")
	}
}

// TestBuildPlanSinceTellsDriftFromRelease covers the case the engine alone
// cannot decide: containers a release leaves untouched keep their old commit
// label, so after a release that changed nothing else, "removed by hand" and
// "added by the release" look the same. The record of the last apply decides.
func TestBuildPlanSinceTellsDriftFromRelease(t *testing.T) {
	base := fake.Project()
	atB := func(p *compose.Project) { p.Commit = fake.CommitB }
	withWorker := fake.Project(atB, func(p *compose.Project) {
		p.Services = append(p.Services, fake.Service("worker", fake.ImgWebA))
	})
	// Release B only added worker; its apply recorded web, db, migrate and worker.
	lastB := DeployedOf(withWorker, time.Time{})
	lastA := DeployedOf(base, time.Time{})
	noWorker := func() compose.Observed { return fake.Converged(base) } // worker's container is absent

	tests := []struct {
		name string
		last *Deployed
		want string
	}{
		{"worker removed by hand after B was applied", lastB, "create prod-worker-1: container missing [drift]"},
		{"B not applied yet: worker is new", lastA, "create prod-worker-1: new service"},
		{"no record: the engine's view decides", nil, "create prod-worker-1: new service"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := briefs(BuildPlanSince(withWorker, noWorker(), tc.last))
			if len(got) != 1 || got[0] != tc.want {
				t.Fatalf("got %q, want [%q]", got, tc.want)
			}
		})
	}
}
