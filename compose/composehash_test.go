package compose

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"
)

// pathFreeCompose uses many keys and no relative path, so its config-hash
// does not depend on the directory it is loaded from.
const pathFreeCompose = `services:
  web:
    image: registry.example/web:1.2
    command: ["serve", "--port", "8080"]
    environment:
      A: "1"
      B: "x<y&z"
    ports: ["8080:80", "127.0.0.1:9000:9000/udp"]
    labels: {team: web}
    healthcheck:
      test: ["CMD", "/app", "health"]
      interval: 5s
    deploy:
      replicas: 2
      resources:
        limits: {cpus: "0.5", memory: 64M}
    depends_on: [db]
    extra_hosts: ["host.docker.internal:host-gateway"]
    ulimits: {nofile: {soft: 1024, hard: 2048}}
    logging: {driver: json-file, options: {max-size: 1m}}
    tmpfs: [/run]
    volumes: [data:/data, /cache]
    networks:
      back:
        aliases: [www]
  db:
    image: registry.example/db:16
    network_mode: "container:abc123"
volumes:
  data: {}
networks:
  back: {}
`

// TestComposeConfigHashKnownValues: the values Docker Compose v5.6.0
// printed for pathFreeCompose (`docker compose -p shop config --hash '*'`,
// any directory), so the format is checked without the CLI installed.
// TestComposeConfigHashOracle checks it against the CLI itself.
func TestComposeConfigHashKnownValues(t *testing.T) {
	p := load(t, testOptions(writeRelease(t, map[string]string{"compose.yaml": pathFreeCompose})))
	want := map[string]string{
		"web": "04b8c22455c03c818c56ec2a70c5bebe704b05297c416325002d558e8b5e73b6",
		"db":  "fc2a70aab9593a2e9eb177ea55e207dc1b90893fb6bd370cd13c2abcb346f653",
	}
	for name, h := range want {
		if got := p.Service(name).ConfigHash; got != h {
			t.Errorf("service %s: config-hash %s, Compose v5.6.0 computes %s", name, got, h)
		}
	}
}

// TestComposeModelTrimsWhatComposeLeavesOut: scaling, dependencies,
// profiles, pull policy and env_file (folded into environment) do not
// move the config-hash, as in Compose.
func TestComposeModelTrimsWhatComposeLeavesOut(t *testing.T) {
	base := types.ServiceConfig{Name: "web", ContainerSpec: types.ContainerSpec{Image: "web:1",
		Environment: types.NewMappingWithEquals([]string{"A=1"})}}
	want := hashOf(t, base)

	replicas, scale := 3, 3
	trimmed := base
	trimmed.Profiles = []string{"debug"}
	trimmed.Scale = &scale
	trimmed.Deploy = &types.DeployConfig{Replicas: &replicas}
	trimmed.ContainerSpec.PullPolicy = types.PullPolicyAlways
	trimmed.ContainerSpec.EnvFiles = []types.EnvFile{{Path: "/srv/app/web.env", Required: true}}
	trimmed.WorkloadSpec.DependsOn = types.DependsOnConfig{"db": {Condition: ConditionHealthy, Required: true}}
	trimmed.WorkloadSpec.Build = &types.BuildConfig{Context: "."}
	withDeploy := base
	withDeploy.Deploy = &types.DeployConfig{}
	if got := hashOf(t, trimmed); got != hashOf(t, withDeploy) {
		t.Errorf("trimmed keys moved the hash: %s, want %s", got, hashOf(t, withDeploy))
	}
	if hashOf(t, withDeploy) == want {
		t.Error("an empty deploy: must still count (Compose keeps the deploy object)")
	}
	if trimmed.Deploy.Replicas == nil || trimmed.ContainerSpec.EnvFiles == nil {
		t.Error("composeModel changed its argument")
	}
}

func hashOf(t *testing.T, s types.ServiceConfig) string {
	t.Helper()
	b, err := composeModel(s)
	if err != nil {
		t.Fatal(err)
	}
	return sha256Hex(b)
}

// TestComposeModelKeyOrder: top-level keys in Compose's frozen order, not
// compose-go's declaration order, values verbatim (HTML-escaped as
// encoding/json writes them).
func TestComposeModelKeyOrder(t *testing.T) {
	s := types.ServiceConfig{Name: "web", Restart: "always", ContainerSpec: types.ContainerSpec{
		Image: "web:1", CapAdd: []string{"NET_ADMIN"}, Labels: types.Labels{"a": "<b>"}}}
	b, err := composeModel(s)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"cap_add":["NET_ADMIN"],"command":null,"entrypoint":null,"image":"web:1","labels":{"a":"\u003cb\u003e"},"restart":"always"}`
	if string(b) != want {
		t.Errorf("model\n%s\nwant\n%s", b, want)
	}
}

// TestComposeKeyOrderCoversServiceConfig fails when compose-go grows a
// top-level service key Compose v5.6.0 did not know: Compose writes such
// keys sorted after the frozen ones, which this package does too, but a
// compose-go upgrade is the moment to check the Compose version that
// moved to it (README: Compose versions).
func TestComposeKeyOrderCoversServiceConfig(t *testing.T) {
	// umask: compose-go v2.16.2 (lockstep) knows it, v2.16.1 (Compose
	// v5.6.0) does not, and lockstep refuses it.
	known := append(slices.Clone(composeKeyOrder), "umask")
	for _, k := range jsonKeys(reflect.TypeFor[types.ServiceConfig]()) {
		if !slices.Contains(known, k) {
			t.Errorf("service key %q is not in composeKeyOrder: check how the Compose version lockstep agrees with orders it", k)
		}
	}
}

func jsonKeys(t reflect.Type) []string {
	var keys []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if f.Anonymous && name == "" {
			keys = append(keys, jsonKeys(f.Type)...)
			continue
		}
		if name != "-" && name != "" {
			keys = append(keys, name)
		}
	}
	return keys
}

// TestConfigHashWithRefs: a service:x reference is hashed as Compose
// hashes it once resolved, the same as writing container:<id> directly.
func TestConfigHashWithRefs(t *testing.T) {
	withRef := strings.Replace(pathFreeCompose, `network_mode: "container:abc123"`, `network_mode: "service:web"`, 1)
	// depends_on is not hashed; without it the reference is no cycle.
	withRef = strings.Replace(withRef, "    depends_on: [db]\n", "", 1)
	p := load(t, testOptions(writeRelease(t, map[string]string{"compose.yaml": withRef})))
	db := p.Service("db")
	resolved := ConfigHashWithRefs(db, func(s string) (string, bool) { return "abc123", s == "web" })
	if resolved != "fc2a70aab9593a2e9eb177ea55e207dc1b90893fb6bd370cd13c2abcb346f653" {
		t.Errorf("resolved config-hash %s, want the hash of network_mode: container:abc123", resolved)
	}
	if db.ConfigHash == resolved {
		t.Error("unresolved and resolved hashes are equal")
	}
	if got := ConfigHashWithRefs(db, func(string) (string, bool) { return "", false }); got != db.ConfigHash {
		t.Errorf("without a container the reference is hashed as written: %s, want %s", got, db.ConfigHash)
	}
	web := p.Service("web")
	if got := ConfigHashWithRefs(web, func(string) (string, bool) { t.Fatal("called"); return "", false }); got != web.ConfigHash {
		t.Errorf("a service without references: %s, want %s", got, web.ConfigHash)
	}
}

// TestNetworkAndVolumeConfigHash: the labels Docker Compose v5.6.0 put on
// the network and volume of pathFreeCompose (`docker compose -p shop up`,
// read back with docker inspect).
func TestNetworkAndVolumeConfigHash(t *testing.T) {
	p := load(t, testOptions(writeRelease(t, map[string]string{"compose.yaml": pathFreeCompose})))
	got := map[string]string{}
	for _, n := range p.Networks {
		got["network "+n.Name] = n.ConfigHash
	}
	for _, v := range p.Volumes {
		got["volume "+v.Name] = v.ConfigHash
	}
	want := map[string]string{
		"network shop_back": "ad6016120f6c5bff5fb42be702f15f3a609a822385088bbe06f191123b71b800",
		"volume shop_data":  "4e9994dd3f18d2005754ebe423d777f4baca4d40768dce9f0f672cc616414856",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("config-hashes %v, want %v", got, want)
	}
}

// TestExternalNetworkHasNoConfigHash: lockstep never creates an external
// network, so it has no config-hash to write.
func TestExternalNetworkHasNoConfigHash(t *testing.T) {
	ext := strings.Replace(pathFreeCompose, "  back: {}\n", "  back: {external: true, name: shared}\n", 1)
	p := load(t, testOptions(writeRelease(t, map[string]string{"compose.yaml": ext})))
	for _, n := range p.Networks {
		if n.External && n.ConfigHash != "" {
			t.Errorf("external network %s: config-hash %q, want none", n.Name, n.ConfigHash)
		}
	}
	if len(p.Networks) == 0 {
		t.Fatal("no network loaded")
	}
}

// TestConfigHashIn: a label_file of the release hashes as Compose hashes it
// when it loads the same files from another directory, and nothing else
// of the hash moves.
func TestConfigHashIn(t *testing.T) {
	p := load(t, testOptions(writeRelease(t, map[string]string{
		"labels.env": "team=core\n",
		"compose.yaml": `
services:
  web:
    image: web:1
    label_file: ./labels.env
  db:
    image: db:1
`})))
	web, db := p.Service("web"), p.Service("db")
	none := func(string) (string, bool) { return "", false }
	if got := ConfigHashIn(web, p.ReleaseDir, p.ReleaseDir, none); got != web.ConfigHash {
		t.Errorf("same dir: %s, want %s", got, web.ConfigHash)
	}
	moved := ConfigHashIn(web, p.ReleaseDir, "/srv/app", none)
	if moved == web.ConfigHash {
		t.Fatal("label_file moved to /srv/app: hash unchanged")
	}
	if !strings.Contains(string(web.composeModel), p.ReleaseDir+"/labels.env") {
		t.Fatalf("model holds no absolute label_file path: %s", web.composeModel)
	}
	root := map[string]json.RawMessage{}
	if err := json.Unmarshal(web.composeModel, &root); err != nil {
		t.Fatal(err)
	}
	root["label_file"], _ = json.Marshal([]string{"/srv/app/labels.env"})
	if want := sha256Hex(orderedObject(root)); moved != want {
		t.Errorf("moved: %s, want %s", moved, want)
	}
	if got := ConfigHashIn(db, p.ReleaseDir, "/srv/app", none); got != db.ConfigHash {
		t.Errorf("service without label_file: %s, want %s", got, db.ConfigHash)
	}
}
