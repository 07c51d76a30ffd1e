package compose

import (
	"encoding/json"
	"strings"
	"testing"
)

const hashCompose = `services:
  web:
    image: nginx:1.27
    environment: {MODE: prod}
    configs: [site]
    deploy: {replicas: 2}
  worker:
    image: worker:1
    configs: [jobs]
configs:
  site: {file: ./site.conf}
  jobs: {file: ./jobs.conf}
`

func hashRelease(edit func(files map[string]string)) map[string]string {
	files := map[string]string{"compose.yaml": hashCompose, "site.conf": "server {}\n", "jobs.conf": "every 5m\n"}
	if edit != nil {
		edit(files)
	}
	return files
}

func stackHashes(p *Project) map[string]string {
	out := map[string]string{}
	for _, s := range p.Stack.Services {
		out[s.Key] = s.Hash
	}
	return out
}

// TestStackHashStable: equal loads give equal hashes, from another
// release directory and at another commit (whose label is not hashed).
func TestStackHashStable(t *testing.T) {
	a := loadStack(t, hashRelease(nil))
	opts := testOptions(writeRelease(t, hashRelease(nil)))
	opts.Swarm, opts.Commit = true, testCommit2
	b := load(t, opts)
	eq(t, "hashes", stackHashes(b), stackHashes(a))
	web := stackService(t, b, "web")
	eq(t, "commit label", web.Spec.Labels[LabelCommit], testCommit2)
	eq(t, "object names", b.Stack.Configs, a.Stack.Configs)
	ja, _ := json.Marshal(a.Stack.Services[0].Spec)
	for i := 0; i < 3; i++ {
		c := loadStack(t, hashRelease(nil))
		jc, _ := json.Marshal(c.Stack.Services[0].Spec)
		if string(jc) != string(ja) {
			t.Fatalf("load %d converted a different spec:\n%s\n%s", i, jc, ja)
		}
	}
}

// TestStackHashSensitive: every effective change changes the hash of the
// service it changes, and no other.
func TestStackHashSensitive(t *testing.T) {
	base := stackHashes(loadStack(t, hashRelease(nil)))
	cases := []struct {
		name string
		edit func(files map[string]string)
	}{
		{"image", func(f map[string]string) {
			f["compose.yaml"] = strings.Replace(f["compose.yaml"], "nginx:1.27", "nginx:1.28", 1)
		}},
		{"environment", func(f map[string]string) {
			f["compose.yaml"] = strings.Replace(f["compose.yaml"], "MODE: prod", "MODE: dev", 1)
		}},
		{"replicas", func(f map[string]string) {
			f["compose.yaml"] = strings.Replace(f["compose.yaml"], "replicas: 2", "replicas: 3", 1)
		}},
		{"config content", func(f map[string]string) { f["site.conf"] = "server { listen 81; }\n" }},
		{"label", func(f map[string]string) {
			f["compose.yaml"] = strings.Replace(f["compose.yaml"], "    deploy: {replicas: 2}", "    deploy: {replicas: 2, labels: {a: b}}", 1)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := stackHashes(loadStack(t, hashRelease(tc.edit)))
			if got["web"] == base["web"] {
				t.Errorf("web's hash did not change")
			}
			if got["worker"] != base["worker"] {
				t.Errorf("worker's hash changed, but nothing of worker did")
			}
		})
	}
}

// TestStackConfigChange: a changed config file is a new object (another
// name), and only the services using it get a new hash.
func TestStackConfigChange(t *testing.T) {
	a := loadStack(t, hashRelease(nil))
	b := loadStack(t, hashRelease(func(f map[string]string) { f["jobs.conf"] = "every 1m\n" }))
	objs := func(p *Project) map[string]StackObject {
		out := map[string]StackObject{}
		for _, o := range p.Stack.Configs {
			out[o.Key] = o
		}
		return out
	}
	oa, ob := objs(a), objs(b)
	if oa["jobs"].Name == ob["jobs"].Name || oa["jobs"].ContentHash == ob["jobs"].ContentHash {
		t.Errorf("changed jobs.conf kept its object name %s", ob["jobs"].Name)
	}
	eq(t, "unchanged config", ob["site"], oa["site"])
	if stackService(t, a, "worker").Hash == stackService(t, b, "worker").Hash {
		t.Error("worker's hash did not change with its config")
	}
	eq(t, "web hash", stackService(t, b, "web").Hash, stackService(t, a, "web").Hash)
	ref := stackService(t, b, "worker").Spec.TaskTemplate.ContainerSpec.Configs[0]
	eq(t, "worker's reference", ref.ConfigName, ob["jobs"].Name)
	if !strings.HasPrefix(ob["jobs"].Name, "shop_jobs_") || ob["jobs"].Labels[LabelContentHash] != ob["jobs"].ContentHash {
		t.Errorf("object %+v is not named and labelled by its content", ob["jobs"])
	}
}
