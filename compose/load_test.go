package compose

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"
)

// TestServiceKeysCoverServiceConfig fails when compose-go's ServiceConfig
// has a field lockstep has not decided about, so a compose-go upgrade
// cannot silently drop a key.
func TestServiceKeysCoverServiceConfig(t *testing.T) {
	var seen []string
	walkServiceFields(reflect.ValueOf(types.ServiceConfig{}), func(key string, _ reflect.Value) {
		seen = append(seen, key)
		if _, ok := serviceKeys[key]; !ok {
			t.Errorf("types.ServiceConfig key %q is neither handled, ignored nor refused in serviceKeys; decide what lockstep does with it", key)
		}
	})
	for key := range serviceKeys {
		if !slices.Contains(seen, key) {
			t.Errorf("serviceKeys lists %q, which types.ServiceConfig no longer has; remove it", key)
		}
	}
}

func TestRefusedKeys(t *testing.T) {
	tests := []struct {
		name, service, key string
		wantMsg            string
	}{
		{"build with image", "  web:\n    image: x:1\n    build: .\n", "build", "lockstep does not build images"},
		{"build only", "  web:\n    build: .\n", "build", "lockstep does not build images"},
		{"volumes_from", "  web:\n    image: x:1\n    volumes_from: [db]\n  db:\n    image: y:1\n", "volumes_from", "named volume"},
		{"links", "  web:\n    image: x:1\n    links: [db]\n  db:\n    image: y:1\n", "links", "links"},
		{"gpus", "  web:\n    image: x:1\n    gpus: all\n", "gpus", "GPU"},
		{"platform", "  web:\n    image: x:1\n    platform: linux/amd64\n", "platform", "platform"},
		{"develop", "  web:\n    image: x:1\n    develop:\n      watch:\n        - path: .\n          action: sync\n          target: /app\n", "develop", "develop"},
		{"pull_policy build", "  web:\n    image: x:1\n    pull_policy: build\n", "pull_policy", "does not build"},
		{"deploy placement", "  web:\n    image: x:1\n    deploy:\n      placement:\n        constraints: [node.role==manager]\n", "deploy.placement", "Swarm"},
		{"update parallelism", "  web:\n    image: x:1\n    deploy:\n      update_config:\n        parallelism: 2\n", "deploy.update_config", "only deploy.update_config.order"},
		{"secret from environment", "  web:\n    image: x:1\n    secrets: [s]\nsecrets:\n  s:\n    environment: HOME\n", "secrets", "only file: sources"},
		{"ipc service", "  web:\n    image: x:1\n    ipc: service:db\n  db:\n    image: y:1\n", "ipc", "not supported"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeRelease(t, map[string]string{"compose.yaml": "services:\n" + tt.service})
			le := loadErr(t, testOptions(dir))
			if le.Service != "web" || le.Key != tt.key {
				t.Errorf("error names service %q key %q, want web and %q: %v", le.Service, le.Key, tt.key, le)
			}
			if le.File != "compose.yaml" || le.Line == 0 {
				t.Errorf("error names %s:%d, want compose.yaml and a line: %v", le.File, le.Line, le)
			}
			assertContains(t, le.Error(), tt.wantMsg)
		})
	}
}

func TestServiceWithoutImage(t *testing.T) {
	dir := writeRelease(t, map[string]string{"compose.yaml": "services:\n  web:\n    command: x\n"})
	le := loadErr(t, testOptions(dir))
	if le.Service != "web" || le.File != "compose.yaml" || le.Line != 2 {
		t.Errorf("error does not name service web at compose.yaml:2: %v", le)
	}
	assertContains(t, le.Error(), "image")
}

func TestBuildErrorNamesLine(t *testing.T) {
	dir := writeRelease(t, map[string]string{"compose.yaml": "services:\n  web:\n    image: x:1\n    build:\n      context: .\n"})
	le := loadErr(t, testOptions(dir))
	want := `compose.yaml:4: service "web": build: lockstep does not build images`
	if !strings.HasPrefix(le.Error(), want) {
		t.Errorf("error = %q, want prefix %q", le.Error(), want)
	}
}

// TestVariablePrecedence checks .env < pin vars < host env files (in
// order) < built-ins.
func TestVariablePrecedence(t *testing.T) {
	dir := writeRelease(t, map[string]string{
		"compose.yaml": `services:
  app:
    image: app:1
    environment:
      A: ${A}
      B: ${B}
      C: ${C}
      D: ${D}
      E: ${E}
      COMMIT: ${LOCKSTEP_COMMIT}
      SHORT: ${LOCKSTEP_COMMIT_SHORT}
      ENV: ${LOCKSTEP_ENVIRONMENT}
`,
		".env": "A=dotenv\nB=dotenv\nC=dotenv\nD=dotenv\nLOCKSTEP_COMMIT=dotenv\n",
	})
	hostDir := t.TempDir()
	host1 := filepath.Join(hostDir, "one.env")
	host2 := filepath.Join(hostDir, "two.env")
	os.WriteFile(host1, []byte("C=host1\nD=host1\nE=${B}-from-host1\n"), 0o600)
	os.WriteFile(host2, []byte("D=host2\nLOCKSTEP_ENVIRONMENT=host2\n"), 0o600)

	opts := testOptions(dir)
	opts.PinVars = map[string]string{"B": "pin", "C": "pin", "LOCKSTEP_COMMIT_SHORT": "pin"}
	opts.HostEnvFiles = []string{host1, host2}
	p := load(t, opts)

	want := []string{
		"A=dotenv", "B=pin", "C=host1", "COMMIT=" + testCommit, "D=host2",
		"E=pin-from-host1", "ENV=production", "SHORT=" + testCommit[:12],
	}
	if got := p.Services[0].Config.Env; !slices.Equal(got, want) {
		t.Errorf("Env = %q\nwant  %q", got, want)
	}
}

// TestDaemonEnvironmentDoesNotLeak sets variables in the test process and
// checks that neither interpolation nor bare `environment:` entries see them.
func TestDaemonEnvironmentDoesNotLeak(t *testing.T) {
	t.Setenv("LEAKY", "from-daemon")
	t.Setenv("LEAKY_BARE", "from-daemon")
	dir := writeRelease(t, map[string]string{"compose.yaml": `services:
  app:
    image: app:1
    environment:
      - VALUE=${LEAKY:-default}
      - LEAKY_BARE
`})
	p := load(t, testOptions(dir))
	env := p.Services[0].Config.Env
	want := []string{"LEAKY_BARE", "VALUE=default"}
	if !slices.Equal(env, want) {
		t.Errorf("Env = %q, want %q (the daemon's environment leaked)", env, want)
	}

	dir = writeRelease(t, map[string]string{"compose.yaml": "services:\n  app:\n    image: app:${LEAKY}\n"})
	le := loadErr(t, testOptions(dir))
	assertContains(t, le.Error(), "LEAKY")
}

func TestUnsetVariable(t *testing.T) {
	tests := []struct {
		name, compose, variable string
		line                    int
	}{
		{"braced", "services:\n  app:\n    image: app:${TAG}\n", "TAG", 3},
		{"plain", "services:\n  app:\n    image: app:1\n    environment:\n      X: $PLAIN\n", "PLAIN", 5},
		{"after a default in the same value", "services:\n  app:\n    image: app:1\n    command: echo ${A:-a} ${AFTER}\n", "AFTER", 4},
		{"inside a used default", "services:\n  app:\n    image: app:1\n    command: echo ${A:-${NESTED}}\n", "NESTED", 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeRelease(t, map[string]string{"compose.yaml": tt.compose})
			le := loadErr(t, testOptions(dir))
			if le.File != "compose.yaml" || le.Line != tt.line {
				t.Errorf("error at %s:%d, want compose.yaml:%d: %v", le.File, le.Line, tt.line, le)
			}
			assertContains(t, le.Error(), "variable "+tt.variable+" is not set")
		})
	}
}

func TestDefaultsKeepComposeMeaning(t *testing.T) {
	dir := writeRelease(t, map[string]string{"compose.yaml": `services:
  app:
    image: app:1
    environment:
      SOFT: ${UNSET:-soft}
      HARD: ${EMPTY-hard}
      SOFT_EMPTY: ${EMPTY:-soft}
      ALT: ${SET:+alt}
      ESCAPED: $${NOT_A_VAR}
      SET_NESTED: ${SET:-${NEVER_USED}}
`, ".env": "EMPTY=\nSET=yes\n"})
	p := load(t, testOptions(dir))
	want := []string{"ALT=alt", "ESCAPED=${NOT_A_VAR}", "HARD=", "SET_NESTED=yes", "SOFT=soft", "SOFT_EMPTY=soft"}
	if got := p.Services[0].Config.Env; !slices.Equal(got, want) {
		t.Errorf("Env = %q\nwant  %q", got, want)
	}

	dir = writeRelease(t, map[string]string{"compose.yaml": "services:\n  app:\n    image: app:${TAG:?set TAG in the pin file}\n"})
	le := loadErr(t, testOptions(dir))
	assertContains(t, le.Error(), "TAG", "set TAG in the pin file")
}

func TestInvalidYAMLNamesFileAndLine(t *testing.T) {
	dir := writeRelease(t, map[string]string{
		"compose.yaml":          "services:\n  app:\n    image: app:1\n",
		"compose.override.yaml": "services:\n  app:\n    image: [unclosed\n    ports: x\n",
	})
	le := loadErr(t, testOptions(dir))
	if le.File != "compose.override.yaml" || le.Line == 0 {
		t.Errorf("error at %s:%d, want compose.override.yaml and a line: %v", le.File, le.Line, le)
	}
	assertContains(t, le.Error(), "invalid YAML")
}

func TestSchemaErrorNamesFileAndKey(t *testing.T) {
	dir := writeRelease(t, map[string]string{"compose.yaml": "services:\n  app:\n    image: app:1\n    restart_policy: always\n"})
	le := loadErr(t, testOptions(dir))
	want := `compose.yaml:4: service "app": restart_policy: not a compose key`
	if !strings.HasPrefix(le.Error(), want) {
		t.Errorf("error = %q, want prefix %q", le.Error(), want)
	}

	// A wrong type deeper down names the whole key path.
	dir = writeRelease(t, map[string]string{"compose.yaml": "services:\n  app:\n    image: app:1\n    healthcheck:\n      retries: many\n"})
	le = loadErr(t, testOptions(dir))
	if le.Service != "app" || le.Key != "healthcheck.retries" || le.Line != 5 {
		t.Errorf("error does not name app / healthcheck.retries at line 5: %v", le)
	}
}

func TestBindMountsStayInsideTheRelease(t *testing.T) {
	outside := t.TempDir()
	tests := []struct {
		name    string
		files   map[string]string
		symlink [2]string // link name (release-relative), target (absolute)
		want    string
	}{
		{"relative escape", map[string]string{"compose.yaml": "services:\n  app:\n    image: a:1\n    volumes:\n      - ../../etc:/host-etc\n"}, [2]string{}, "escapes the release"},
		{"long syntax escape", map[string]string{"compose.yaml": "services:\n  app:\n    image: a:1\n    volumes:\n      - type: bind\n        source: ./conf/../../x\n        target: /x\n"}, [2]string{}, "escapes the release"},
		{"symlink escape", map[string]string{"compose.yaml": "services:\n  app:\n    image: a:1\n    volumes:\n      - ./conf:/conf\n"}, [2]string{"conf", outside}, "symlink"},
		{"missing source", map[string]string{"compose.yaml": "services:\n  app:\n    image: a:1\n    volumes:\n      - ./missing.conf:/x.conf\n"}, [2]string{}, "does not exist in the release"},
		{"env_file escape", map[string]string{"compose.yaml": "services:\n  app:\n    image: a:1\n    env_file: ../secrets.env\n"}, [2]string{}, "escapes the release"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeRelease(t, tt.files)
			if tt.symlink[0] != "" {
				if err := os.Symlink(tt.symlink[1], filepath.Join(dir, tt.symlink[0])); err != nil {
					t.Fatal(err)
				}
			}
			le := loadErr(t, testOptions(dir))
			if le.Service != "app" || le.File != "compose.yaml" || le.Line == 0 {
				t.Errorf("error does not name service app in compose.yaml with a line: %v", le)
			}
			assertContains(t, le.Error(), tt.want)
		})
	}

	// An absolute host path is allowed (policy decides later), and is not a
	// repository file.
	dir := writeRelease(t, map[string]string{"compose.yaml": "services:\n  app:\n    image: a:1\n    volumes:\n      - " + outside + ":/data\n"})
	p := load(t, testOptions(dir))
	if got := p.Services[0].Host.Binds; !slices.Equal(got, []string{outside + ":/data:rw"}) {
		t.Errorf("Binds = %q", got)
	}
	if len(p.Services[0].Files) != 0 {
		t.Errorf("host path recorded as repository file: %v", p.Services[0].Files)
	}
}

func TestIncludesAndExtends(t *testing.T) {
	dir := writeRelease(t, map[string]string{
		"compose.yaml": `include:
  - lib/db.yaml
services:
  web:
    extends:
      file: lib/base.yaml
      service: base
    image: web:1
`,
		"lib/db.yaml":       "services:\n  db:\n    image: db:1\n    volumes:\n      - ./initdb:/docker-entrypoint-initdb.d:ro\n",
		"lib/initdb/01.sql": "select 1;\n",
		"lib/base.yaml":     "services:\n  base:\n    image: base:1\n    environment:\n      FROM_BASE: \"1\"\n",
	})
	p := load(t, testOptions(dir))
	db, web := p.Service("db"), p.Service("web")
	if db == nil || web == nil {
		t.Fatalf("services = %v, want db and web", p.Services)
	}
	if !slices.Contains(web.Config.Env, "FROM_BASE=1") || web.Image != "web:1" {
		t.Errorf("extends not applied: image %s env %q", web.Image, web.Config.Env)
	}
	if len(db.Files) != 1 || db.Files[0].Path != "lib/initdb" {
		t.Errorf("included service's bind source resolved against the include's dir: files %v", db.Files)
	}

	tests := []struct{ name, compose, want string }{
		{"remote include", "include:\n  - https://user:token@example.com/repo.git#main:compose.yaml\nservices:\n  a:\n    image: a:1\n", "remote include"},
		{"git include", "include:\n  - git@github.com:org/repo.git\nservices:\n  a:\n    image: a:1\n", "remote include"},
		{"escaping include", "include:\n  - ../other/compose.yaml\nservices:\n  a:\n    image: a:1\n", "escapes the release"},
		{"escaping extends", "services:\n  a:\n    image: a:1\n    extends:\n      file: ../base.yaml\n      service: b\n", "escapes the release"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeRelease(t, map[string]string{"compose.yaml": tt.compose})
			le := loadErr(t, testOptions(dir))
			if le.File != "compose.yaml" || le.Line == 0 {
				t.Errorf("error at %s:%d, want compose.yaml and a line: %v", le.File, le.Line, le)
			}
			assertContains(t, le.Error(), tt.want)
			if strings.Contains(le.Error(), "token") {
				t.Errorf("error leaks the URL's credentials: %v", le)
			}
		})
	}
}

func TestServiceOrder(t *testing.T) {
	dir := writeRelease(t, map[string]string{"compose.yaml": `services:
  web:
    image: w:1
    depends_on: [api]
  api:
    image: a:1
    depends_on:
      db: {condition: service_healthy}
      cache: {condition: service_started}
  db:
    image: d:1
  cache:
    image: c:1
  zz-proxy:
    image: p:1
  vpn-client:
    image: v:1
    network_mode: service:zz-proxy
`})
	p := load(t, testOptions(dir))
	var got []string
	for _, s := range p.Services {
		got = append(got, s.Name)
	}
	want := []string{"cache", "db", "api", "web", "zz-proxy", "vpn-client"}
	if !slices.Equal(got, want) {
		t.Errorf("order = %v, want %v", got, want)
	}
}

func TestDependencyCycle(t *testing.T) {
	dir := writeRelease(t, map[string]string{"compose.yaml": `services:
  a:
    image: a:1
    depends_on: [b]
  b:
    image: b:1
    depends_on: [c]
  c:
    image: c:1
    depends_on: [a]
  d:
    image: d:1
`})
	ctxErr := loadErr(t, testOptions(dir))
	msg := ctxErr.Error()
	for _, s := range []string{"a", "b", "c"} {
		if !strings.Contains(msg, s) {
			t.Errorf("cycle error %q does not name %s", msg, s)
		}
	}
	assertContains(t, msg, "cycle")
}

// TestLabels pins the exact container, network and volume labels.
func TestLabels(t *testing.T) {
	dir := writeRelease(t, map[string]string{"compose.yaml": `services:
  web:
    image: w:1
    labels: {team: web}
    depends_on:
      db: {condition: service_healthy, restart: true}
      cache: {condition: service_started}
  db:
    image: d:1
  cache:
    image: c:1
volumes:
  data: {}
networks:
  ext:
    external: true
    name: shared
`})
	opts := testOptions(dir)
	p := load(t, opts)
	web := p.Service("web")
	want := map[string]string{
		"team":                                    "web",
		"com.docker.compose.project":              "shop",
		"com.docker.compose.service":              "web",
		"com.docker.compose.oneoff":               "False",
		"com.docker.compose.project.working_dir":  dir,
		"com.docker.compose.project.config_files": filepath.Join(dir, "compose.yaml"),
		"com.docker.compose.depends_on":           "cache:service_started:false,db:service_healthy:true",
		"com.docker.compose.version":              "0.1.0-test",
		"com.docker.compose.config-hash":          web.ConfigHash,
		"lockstep.environment":                    "production",
		"lockstep.commit":                         testCommit,
		"lockstep.hash":                           web.Hash,
		"lockstep.spec-hash":                      web.SpecHash,
	}
	if !reflect.DeepEqual(web.Config.Labels, want) {
		t.Errorf("labels =\n%v\nwant\n%v", web.Config.Labels, want)
	}

	cfg, _, _ := ContainerCreate(web, 3)
	if cfg.Labels[LabelContainerNumber] != "3" {
		t.Errorf("ContainerCreate container-number = %q", cfg.Labels[LabelContainerNumber])
	}
	if _, ok := web.Config.Labels[LabelContainerNumber]; ok {
		t.Error("ContainerCreate mutated the service's labels")
	}

	// The unused volume is pruned like compose does; the default network
	// carries the compose labels; the external one carries none.
	if len(p.Volumes) != 0 {
		t.Errorf("unused volume kept: %v", p.Volumes)
	}
	if len(p.Networks) != 1 || p.Networks[0].Name != "shop_default" {
		t.Fatalf("networks = %+v", p.Networks)
	}
	wantNet := map[string]string{LabelProject: "shop", LabelNetwork: "default", LabelVersion: "0.1.0-test"}
	if !reflect.DeepEqual(p.Networks[0].Labels, wantNet) {
		t.Errorf("network labels = %v, want %v", p.Networks[0].Labels, wantNet)
	}
}

func TestProfiledServicesAreNotDeployed(t *testing.T) {
	dir := writeRelease(t, map[string]string{"compose.yaml": "services:\n  app:\n    image: a:1\n  debug:\n    image: d:1\n    profiles: [debug]\n"})
	p := load(t, testOptions(dir))
	if len(p.Services) != 1 || p.Services[0].Name != "app" {
		t.Errorf("services = %v, want only app", p.Services)
	}

	dir = writeRelease(t, map[string]string{"compose.yaml": "services:\n  app:\n    image: a:1\n    depends_on: [debug]\n  debug:\n    image: d:1\n    profiles: [debug]\n"})
	le := loadErr(t, testOptions(dir))
	assertContains(t, le.Error(), "debug")
}

func TestComposeFileDiscoveryAndPinFiles(t *testing.T) {
	dir := writeRelease(t, map[string]string{
		"docker-compose.yml":    "services:\n  app:\n    image: a:1\n",
		"compose.override.yaml": "services:\n  app:\n    image: a:2\n",
		"deploy/prod.yaml":      "services:\n  app:\n    image: a:3\n",
	})
	p := load(t, testOptions(dir))
	if p.Services[0].Image != "a:2" || len(p.ConfigFiles) != 2 {
		t.Errorf("discovery: image %s files %v, want the override applied", p.Services[0].Image, p.ConfigFiles)
	}
	opts := testOptions(dir)
	opts.ComposeFiles = []string{"docker-compose.yml", "deploy/prod.yaml"}
	p = load(t, opts)
	if p.Services[0].Image != "a:3" {
		t.Errorf("compose_files: image %s, want a:3", p.Services[0].Image)
	}
	opts.ComposeFiles = []string{"../elsewhere.yaml"}
	le := loadErr(t, opts)
	assertContains(t, le.Error(), "compose_files")
}

func TestInvalidProjectName(t *testing.T) {
	dir := writeRelease(t, map[string]string{"compose.yaml": "services:\n  app:\n    image: a:1\n"})
	opts := testOptions(dir)
	opts.Project = "Shop!"
	le := loadErr(t, opts)
	assertContains(t, le.Error(), "project name")
}

// TestContainerCreateDeepCopies mutates everything the adapter could touch
// in the copies and checks the service is unchanged, and that the copy is
// otherwise identical.
func TestContainerCreateDeepCopies(t *testing.T) {
	p := load(t, LoadOptions{ReleaseDir: copyRelease(t, "testdata/kitchen"), Project: "shop", Environment: "e", Commit: testCommit, PinVars: map[string]string{"PIN_VAR": "x"}})
	web := p.Service("web")
	before, _ := json.Marshal(web)

	cfg, host, nets := ContainerCreate(web, 1)
	delete(cfg.Labels, LabelContainerNumber)
	if !reflect.DeepEqual(cfg, web.Config) || !reflect.DeepEqual(host, web.Host) || !reflect.DeepEqual(nets, web.Networking) {
		t.Fatal("ContainerCreate's copy differs from the service's configs")
	}
	cfg.Cmd[0] = "changed"
	cfg.Env[0] = "changed"
	cfg.Healthcheck.Test[0] = "changed"
	*cfg.StopTimeout = 1
	for k := range cfg.ExposedPorts {
		delete(cfg.ExposedPorts, k)
	}
	host.Mounts[0].Source = "changed"
	host.Mounts[1].TmpfsOptions.SizeBytes = 1
	host.Binds[0] = "changed"
	host.Ulimits[0].Soft = 1
	host.Tmpfs["/run"] = "changed"
	*host.PidsLimit = 1
	for _, b := range host.PortBindings {
		b[0].HostPort = "1"
	}
	for _, ep := range nets.EndpointsConfig {
		ep.Aliases[0] = "changed"
		if ep.IPAMConfig != nil {
			ep.IPAMConfig.IPv4Address = ep.IPAMConfig.IPv4Address.Next()
		}
	}
	after, _ := json.Marshal(web)
	if string(before) != string(after) {
		t.Error("mutating ContainerCreate's result changed the shared service")
	}
}

// TestHostPathsTheLoaderWouldReadAreRefused: include, extends.file,
// env_file and label_file name files the loader reads itself; a compose file
// from git must not make the agent read a host file (a /dev/zero would
// exhaust its memory, /etc/shadow would leak into the model).
func TestHostPathsTheLoaderWouldReadAreRefused(t *testing.T) {
	tests := []struct{ name, yaml, key string }{
		{"env_file", "services:\n  web:\n    image: x\n    env_file: /dev/zero\n", "env_file"},
		{"label_file", "services:\n  web:\n    image: x\n    label_file: /etc/shadow\n", "label_file"},
		{"include", "include:\n  - /dev/zero\nservices:\n  web:\n    image: x\n", "include"},
		{"extends", "services:\n  web:\n    extends:\n      file: /dev/zero\n      service: a\n", "extends.file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeRelease(t, map[string]string{"compose.yaml": tc.yaml})
			e := loadErr(t, testOptions(dir))
			if e.Key != tc.key || e.File != "compose.yaml" || !strings.Contains(e.Msg, "host path") {
				t.Fatalf("got %+v, want a refusal of %s naming compose.yaml", e, tc.key)
			}
		})
	}
	// Bind mounts of host paths are not read by the loader: allowed here,
	// governed by [policy].
	dir := writeRelease(t, map[string]string{"compose.yaml": "services:\n  web:\n    image: x\n    volumes: [\"/srv/data:/data\"]\n"})
	load(t, testOptions(dir))
}
