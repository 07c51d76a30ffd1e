package compose

import (
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/swarm"
)

// loadStack loads files as a swarm stack named shop.
func loadStack(t *testing.T, files map[string]string) *Project {
	t.Helper()
	opts := testOptions(writeRelease(t, files))
	opts.Swarm = true
	p := load(t, opts)
	if p.Stack == nil {
		t.Fatal("Swarm load returned no Stack")
	}
	if len(p.Services)+len(p.Networks)+len(p.Volumes) != 0 {
		t.Fatalf("Swarm load filled the single-host model: %d services, %d networks, %d volumes", len(p.Services), len(p.Networks), len(p.Volumes))
	}
	return p
}

func stackService(t *testing.T, p *Project, key string) *StackService {
	t.Helper()
	for i := range p.Stack.Services {
		if p.Stack.Services[i].Key == key {
			return &p.Stack.Services[i]
		}
	}
	t.Fatalf("no stack service %q", key)
	return nil
}

func ptr[T any](v T) *T { return &v }

func dur(s string) time.Duration {
	d, err := time.ParseDuration(s)
	if err != nil {
		panic(err)
	}
	return d
}

func eq(t *testing.T, what string, got, want any) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		g, _ := json.Marshal(got)
		w, _ := json.Marshal(want)
		t.Errorf("%s =\n%s\nwant\n%s", what, g, w)
	}
}

// TestStackServiceSpec: each compose key lands in the swarm service spec
// where docker stack deploy puts it.
func TestStackServiceSpec(t *testing.T) {
	cases := []struct {
		name, web string // the web service's keys, indented by 4
		extra     string // top-level sections
		check     func(t *testing.T, s *StackService, st *Stack)
	}{
		{"defaults", "", "", func(t *testing.T, s *StackService, st *Stack) {
			eq(t, "name", s.Spec.Name, "shop_web")
			eq(t, "mode", s.Spec.Mode, swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: ptr(uint64(1))}})
			eq(t, "restart policy", s.Spec.TaskTemplate.RestartPolicy, (*swarm.RestartPolicy)(nil))
			eq(t, "update config", s.Spec.UpdateConfig, (*swarm.UpdateConfig)(nil))
			eq(t, "networks", s.Spec.TaskTemplate.Networks, []swarm.NetworkAttachmentConfig{{Target: "shop_default", Aliases: []string{"web"}}})
			eq(t, "healthcheck", s.Healthcheck, false)
			eq(t, "job", s.Job, false)
		}},
		{"labels", "labels: {tier: front}\n    deploy:\n      labels: {traefik.enable: \"true\"}", "", func(t *testing.T, s *StackService, st *Stack) {
			l := s.Spec.Labels
			eq(t, "service label", l["traefik.enable"], "true")
			eq(t, "namespace", l[LabelStackNamespace], "shop")
			eq(t, "image label", l[LabelStackImage], "nginx:1.27")
			eq(t, "environment", l[LabelEnvironment], "production")
			eq(t, "commit", l[LabelCommit], testCommit)
			eq(t, "hash label", l[LabelHash], s.Hash)
			eq(t, "tier on the service", l["tier"], "")
			eq(t, "container labels", s.Spec.TaskTemplate.ContainerSpec.Labels, map[string]string{"tier": "front", LabelStackNamespace: "shop"})
		}},
		{"restart always", "restart: always", "", func(t *testing.T, s *StackService, st *Stack) {
			eq(t, "restart", s.Spec.TaskTemplate.RestartPolicy, &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionAny})
		}},
		{"restart unless-stopped", "restart: unless-stopped", "", func(t *testing.T, s *StackService, st *Stack) {
			eq(t, "restart", s.Spec.TaskTemplate.RestartPolicy, &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionAny})
		}},
		{"restart on-failure:3", "restart: on-failure:3", "", func(t *testing.T, s *StackService, st *Stack) {
			eq(t, "restart", s.Spec.TaskTemplate.RestartPolicy, &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionOnFailure, MaxAttempts: ptr(uint64(3))})
		}},
		{"restart no", "restart: \"no\"", "", func(t *testing.T, s *StackService, st *Stack) {
			eq(t, "restart", s.Spec.TaskTemplate.RestartPolicy, &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionNone})
		}},
		{"restart_policy", "deploy:\n      restart_policy: {condition: on-failure, delay: 5s, max_attempts: 2, window: 1m}", "", func(t *testing.T, s *StackService, st *Stack) {
			eq(t, "restart", s.Spec.TaskTemplate.RestartPolicy, &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionOnFailure,
				Delay: ptr(dur("5s")), MaxAttempts: ptr(uint64(2)), Window: ptr(dur("1m"))})
		}},
		{"update and rollback config", "deploy:\n      update_config: {delay: 10s, failure_action: rollback, monitor: 30s, max_failure_ratio: 0.5, order: start-first}\n      rollback_config: {parallelism: 2}", "", func(t *testing.T, s *StackService, st *Stack) {
			eq(t, "update", s.Spec.UpdateConfig, &swarm.UpdateConfig{Parallelism: 1, Delay: dur("10s"), FailureAction: swarm.UpdateFailureActionRollback,
				Monitor: dur("30s"), MaxFailureRatio: 0.5, Order: swarm.UpdateOrderStartFirst})
			eq(t, "rollback", s.Spec.RollbackConfig, &swarm.UpdateConfig{Parallelism: 2})
		}},
		{"ports", "ports:\n      - \"8080:80\"\n      - {target: 53, published: \"5353\", protocol: udp, mode: host}\n      - {target: 9000}", "", func(t *testing.T, s *StackService, st *Stack) {
			eq(t, "endpoint", s.Spec.EndpointSpec, &swarm.EndpointSpec{Ports: []swarm.PortConfig{
				{Protocol: "tcp", TargetPort: 9000, PublishMode: swarm.PortConfigPublishModeIngress},
				{Protocol: "udp", TargetPort: 53, PublishedPort: 5353, PublishMode: swarm.PortConfigPublishModeHost},
				{Protocol: "tcp", TargetPort: 80, PublishedPort: 8080, PublishMode: swarm.PortConfigPublishModeIngress},
			}})
		}},
		{"endpoint_mode", "deploy: {endpoint_mode: dnsrr}", "", func(t *testing.T, s *StackService, st *Stack) {
			eq(t, "endpoint", s.Spec.EndpointSpec, &swarm.EndpointSpec{Mode: swarm.ResolutionModeDNSRR})
		}},
		{"healthcheck", "healthcheck: {test: [CMD, curl, -f, http://localhost], interval: 10s, timeout: 2s, retries: 3, start_period: 30s, start_interval: 1s}", "", func(t *testing.T, s *StackService, st *Stack) {
			eq(t, "healthcheck", s.Spec.TaskTemplate.ContainerSpec.Healthcheck, &container.HealthConfig{Test: []string{"CMD", "curl", "-f", "http://localhost"},
				Interval: dur("10s"), Timeout: dur("2s"), Retries: 3, StartPeriod: dur("30s"), StartInterval: dur("1s")})
			eq(t, "Healthcheck", s.Healthcheck, true)
		}},
		{"healthcheck disabled", "healthcheck: {disable: true}", "", func(t *testing.T, s *StackService, st *Stack) {
			eq(t, "healthcheck", s.Spec.TaskTemplate.ContainerSpec.Healthcheck, &container.HealthConfig{Test: []string{"NONE"}})
			eq(t, "Healthcheck", s.Healthcheck, false)
		}},
		{"resources", "deploy:\n      resources:\n        limits: {cpus: \"0.1\", memory: 512M, pids: 100}\n        reservations: {cpus: \"0.25\", memory: 128M, generic_resources: [{discrete_resource_spec: {kind: gpu, value: 2}}]}", "", func(t *testing.T, s *StackService, st *Stack) {
			eq(t, "resources", s.Spec.TaskTemplate.Resources, &swarm.ResourceRequirements{
				Limits: &swarm.Limit{NanoCPUs: 100000000, MemoryBytes: 512 << 20, Pids: 100},
				Reservations: &swarm.Resources{NanoCPUs: 250000000, MemoryBytes: 128 << 20,
					GenericResources: []swarm.GenericResource{{DiscreteResourceSpec: &swarm.DiscreteGenericResource{Kind: "gpu", Value: 2}}}}})
		}},
		{"placement", "deploy:\n      placement: {constraints: [node.role == worker, node.labels.zone == a], preferences: [{spread: node.labels.zone}], max_replicas_per_node: 2}", "", func(t *testing.T, s *StackService, st *Stack) {
			eq(t, "placement", s.Spec.TaskTemplate.Placement, &swarm.Placement{Constraints: []string{"node.role == worker", "node.labels.zone == a"},
				Preferences: []swarm.PlacementPreference{{Spread: &swarm.SpreadOver{SpreadDescriptor: "node.labels.zone"}}}, MaxReplicas: 2})
		}},
		{"replicas", "deploy: {replicas: 3}", "", func(t *testing.T, s *StackService, st *Stack) {
			eq(t, "mode", s.Spec.Mode, swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: ptr(uint64(3))}})
		}},
		{"global", "deploy: {mode: global}", "", func(t *testing.T, s *StackService, st *Stack) {
			eq(t, "mode", s.Spec.Mode, swarm.ServiceMode{Global: &swarm.GlobalService{}})
		}},
		{"replicated-job", "deploy: {mode: replicated-job, replicas: 2}", "", func(t *testing.T, s *StackService, st *Stack) {
			eq(t, "mode", s.Spec.Mode, swarm.ServiceMode{ReplicatedJob: &swarm.ReplicatedJob{MaxConcurrent: ptr(uint64(2)), TotalCompletions: ptr(uint64(2))}})
			eq(t, "job", s.Job, true)
		}},
		{"global-job", "deploy: {mode: global-job}", "", func(t *testing.T, s *StackService, st *Stack) {
			eq(t, "mode", s.Spec.Mode, swarm.ServiceMode{GlobalJob: &swarm.GlobalJob{}})
			eq(t, "job", s.Job, true)
		}},
		{"networks", "networks:\n      front: {aliases: [www]}\n      edge: {}\n      back: {}", "networks:\n  front: {attachable: true, driver_opts: {encrypted: \"true\"}, labels: {team: a}}\n  edge: {external: true, name: traefik-public}\n  back: {name: shared-back, internal: true}\n", func(t *testing.T, s *StackService, st *Stack) {
			eq(t, "attachments", s.Spec.TaskTemplate.Networks, []swarm.NetworkAttachmentConfig{
				{Target: "shared-back", Aliases: []string{"web"}},
				{Target: "shop_front", Aliases: []string{"www", "web"}},
				{Target: "traefik-public", Aliases: []string{"web"}},
			})
			eq(t, "stack networks", st.Networks, []StackNetwork{
				{Key: "back", Name: "shared-back", Driver: "overlay", Internal: true, Labels: map[string]string{LabelStackNamespace: "shop"}},
				{Key: "edge", Name: "traefik-public", External: true},
				{Key: "front", Name: "shop_front", Driver: "overlay", Attachable: true, DriverOpts: map[string]string{"encrypted": "true"},
					Labels: map[string]string{"team": "a", LabelStackNamespace: "shop"}},
			})
		}},
		{"ipam", "", "networks:\n  default: {enable_ipv6: true, ipam: {driver: default, config: [{subnet: 10.9.0.0/24, ip_range: 10.9.0.128/25, gateway: 10.9.0.1, aux_addresses: {r: 10.9.0.2}}]}}\n", func(t *testing.T, s *StackService, st *Stack) {
			eq(t, "network", st.Networks, []StackNetwork{{Key: "default", Name: "shop_default", Driver: "overlay", EnableIPv6: true,
				Labels: map[string]string{LabelStackNamespace: "shop"},
				IPAM:   &StackIPAM{Driver: "default", Config: []StackIPAMPool{{Subnet: "10.9.0.0/24", IPRange: "10.9.0.128/25", Gateway: "10.9.0.1", AuxAddress: map[string]string{"r": "10.9.0.2"}}}}}})
		}},
		{"volumes", "volumes:\n      - data:/data\n      - ext:/ext:ro\n      - /cache\n      - /srv/shared:/shared\n      - {type: tmpfs, target: /scratch, tmpfs: {size: 64m}}\n      - {type: volume, source: data, target: /nc, volume: {nocopy: true}}\n    tmpfs: [/run]",
			"volumes:\n  data: {driver: local, driver_opts: {type: nfs}, labels: {backup: daily}}\n  ext: {external: true, name: legacy-data}\n", func(t *testing.T, s *StackService, st *Stack) {
				dataOpts := &mount.VolumeOptions{Labels: map[string]string{"backup": "daily", LabelStackNamespace: "shop"},
					DriverConfig: &mount.Driver{Name: "local", Options: map[string]string{"type": "nfs"}}}
				ncOpts := *dataOpts
				ncOpts.NoCopy = true
				eq(t, "mounts", s.Spec.TaskTemplate.ContainerSpec.Mounts, []mount.Mount{
					{Type: mount.TypeVolume, Source: "shop_data", Target: "/data", VolumeOptions: dataOpts},
					{Type: mount.TypeVolume, Source: "legacy-data", Target: "/ext", ReadOnly: true, VolumeOptions: &mount.VolumeOptions{}},
					{Type: mount.TypeVolume, Target: "/cache"},
					{Type: mount.TypeBind, Source: "/srv/shared", Target: "/shared"},
					{Type: mount.TypeTmpfs, Target: "/scratch", TmpfsOptions: &mount.TmpfsOptions{SizeBytes: 64 << 20}},
					{Type: mount.TypeVolume, Source: "shop_data", Target: "/nc", VolumeOptions: &ncOpts},
					{Type: mount.TypeTmpfs, Target: "/run"},
				})
				eq(t, "stack volumes", st.Volumes, []StackVolume{
					{Key: "data", Name: "shop_data", Driver: "local", DriverOpts: map[string]string{"type": "nfs"}, Labels: map[string]string{"backup": "daily", LabelStackNamespace: "shop"}},
					{Key: "ext", Name: "legacy-data", External: true},
				})
			}},
		{"container", `environment: {B: "2", A: "1", EMPTY: ""}
    command: [serve, --port, "80"]
    entrypoint: [/bin/app]
    user: "1000:1000"
    working_dir: /app
    hostname: web1
    stop_grace_period: 30s
    stop_signal: SIGINT
    init: true
    read_only: true
    cap_add: [net_bind_service]
    cap_drop: [ALL]
    sysctls: {net.core.somaxconn: "1024"}
    ulimits: {nofile: {soft: 1024, hard: 2048}, nproc: 512}
    extra_hosts: ["db.local:10.0.0.5", "api.local:10.0.0.6", "cache.local:10.0.0.7", "v6.local:[::1]"]
    dns: [1.1.1.1]
    dns_search: [example.com]
    dns_opt: [ndots:2]
    tty: true
    stdin_open: true
    group_add: [audio]
    security_opt: [no-new-privileges:true]
    logging: {driver: json-file, options: {max-size: 10m}}`, "", func(t *testing.T, s *StackService, st *Stack) {
			cs := s.Spec.TaskTemplate.ContainerSpec
			eq(t, "env", cs.Env, []string{"A=1", "B=2", "EMPTY="})
			eq(t, "command", cs.Command, []string{"/bin/app"})
			eq(t, "args", cs.Args, []string{"serve", "--port", "80"})
			eq(t, "user", cs.User, "1000:1000")
			eq(t, "dir", cs.Dir, "/app")
			eq(t, "hostname", cs.Hostname, "web1")
			eq(t, "stop grace", cs.StopGracePeriod, ptr(dur("30s")))
			eq(t, "stop signal", cs.StopSignal, "SIGINT")
			eq(t, "init", cs.Init, ptr(true))
			eq(t, "read only", cs.ReadOnly, true)
			eq(t, "cap add", cs.CapabilityAdd, []string{"CAP_NET_BIND_SERVICE"})
			eq(t, "cap drop", cs.CapabilityDrop, []string{"ALL"})
			eq(t, "sysctls", cs.Sysctls, map[string]string{"net.core.somaxconn": "1024"})
			eq(t, "ulimits", cs.Ulimits, []*container.Ulimit{{Name: "nofile", Soft: 1024, Hard: 2048}, {Name: "nproc", Soft: 512, Hard: 512}})
			eq(t, "hosts", cs.Hosts, []string{"10.0.0.6 api.local", "10.0.0.7 cache.local", "10.0.0.5 db.local", "::1 v6.local"})
			if cs.DNSConfig == nil || len(cs.DNSConfig.Nameservers) != 1 || cs.DNSConfig.Nameservers[0].String() != "1.1.1.1" ||
				!reflect.DeepEqual(cs.DNSConfig.Search, []string{"example.com"}) || !reflect.DeepEqual(cs.DNSConfig.Options, []string{"ndots:2"}) {
				t.Errorf("dns config = %+v", cs.DNSConfig)
			}
			eq(t, "tty", cs.TTY, true)
			eq(t, "stdin", cs.OpenStdin, true)
			eq(t, "groups", cs.Groups, []string{"audio"})
			eq(t, "privileges", cs.Privileges, &swarm.Privileges{NoNewPrivileges: true})
			eq(t, "log driver", s.Spec.TaskTemplate.LogDriver, &swarm.Driver{Name: "json-file", Options: map[string]string{"max-size": "10m"}})
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			web := "  web:\n    image: nginx:1.27\n"
			if tc.web != "" {
				web += "    " + tc.web + "\n"
			}
			p := loadStack(t, map[string]string{"compose.yaml": "services:\n" + web + tc.extra})
			tc.check(t, stackService(t, p, "web"), p.Stack)
		})
	}
}

// TestStackObjects: configs and secrets become swarm objects named by
// their content, referenced as docker stack deploy references them.
func TestStackObjects(t *testing.T) {
	p := loadStack(t, map[string]string{
		"compose.yaml": `services:
  web:
    image: nginx:1.27
    configs:
      - site
      - {source: extra, target: /etc/extra.conf, uid: "101", gid: "101", mode: 0440}
    secrets: [token, {source: inline, target: inline.txt}, ext]
configs:
  site: {file: ./site.conf, labels: {owner: web}}
  extra: {content: "x=${X:-1}"}
secrets:
  token: {environment: TOKEN}
  inline: {file: ./inline.txt}
  ext: {external: true, name: shared-token}
`,
		"site.conf":  "server {}\n",
		"inline.txt": "inline-secret",
		".env":       "TOKEN=tok-value\n",
	})
	s := stackService(t, p, "web")
	st := p.Stack
	site := st.Configs[1]
	eq(t, "site key", site.Key, "site")
	eq(t, "site content hash", site.ContentHash, contentSum([]byte("server {}\n")))
	eq(t, "site name", site.Name, "shop_site_"+site.ContentHash[:12])
	eq(t, "site labels", site.Labels, map[string]string{"owner": "web", LabelStackNamespace: "shop", LabelEnvironment: "production", LabelContentHash: site.ContentHash})
	eq(t, "site source", site.Source, "site.conf")
	eq(t, "site data", string(site.Data()), "server {}\n")
	eq(t, "extra data", string(st.Configs[0].Data()), "x=1")
	eq(t, "token data", string(st.Secrets[2].Data()), "tok-value")
	eq(t, "ext", st.Secrets[0], StackObject{Key: "ext", Name: "shared-token", External: true})
	cs := s.Spec.TaskTemplate.ContainerSpec
	eq(t, "config refs", cs.Configs, []*swarm.ConfigReference{
		{ConfigName: st.Configs[0].Name, File: &swarm.ConfigReferenceFileTarget{Name: "/etc/extra.conf", UID: "101", GID: "101", Mode: 0o440}},
		{ConfigName: site.Name, File: &swarm.ConfigReferenceFileTarget{Name: "/site", UID: "0", GID: "0", Mode: 0o444}},
	})
	eq(t, "secret refs", cs.Secrets, []*swarm.SecretReference{
		{SecretName: "shared-token", File: &swarm.SecretReferenceFileTarget{Name: "/run/secrets/ext", UID: "0", GID: "0", Mode: 0o444}},
		{SecretName: st.Secrets[1].Name, File: &swarm.SecretReferenceFileTarget{Name: "inline.txt", UID: "0", GID: "0", Mode: 0o444}},
		{SecretName: st.Secrets[2].Name, File: &swarm.SecretReferenceFileTarget{Name: "/run/secrets/token", UID: "0", GID: "0", Mode: 0o444}},
	})
	eq(t, "used configs", s.Configs, []string{"extra", "site"})
	eq(t, "used secrets", s.Secrets, []string{"ext", "inline", "token"})
}

// TestStackObjectNameLength: names stay within the swarm's 64 characters
// and two long keys with a common prefix keep distinct names.
func TestStackObjectNameLength(t *testing.T) {
	h := strings.Repeat("ab", 32)
	a, ok1 := objectName("shop", strings.Repeat("k", 70)+"-one", h)
	b, ok2 := objectName("shop", strings.Repeat("k", 70)+"-two", h)
	if !ok1 || !ok2 || len(a) > maxObjectName || len(b) > maxObjectName || a == b {
		t.Errorf("names %q (%d) and %q (%d)", a, len(a), b, len(b))
	}
	if !strings.HasPrefix(a, "shop_kkk") || !strings.HasSuffix(a, "_"+h[:12]) {
		t.Errorf("name %q does not keep the namespace, key prefix and hash", a)
	}
	if n, ok := objectName("shop", "site", h); !ok || n != "shop_site_"+h[:12] {
		t.Errorf("short name = %q", n)
	}
	if _, ok := objectName(strings.Repeat("p", 60), "site", h); ok {
		t.Error("a 60-character namespace still made a name")
	}
}

func TestStackHostBindAndPolicy(t *testing.T) {
	p := loadStack(t, map[string]string{"compose.yaml": "services:\n  web:\n    image: nginx:1.27\n    cap_add: [NET_ADMIN]\n    volumes: [/etc:/host-etc:ro, /srv/data:/data]\n"})
	v := CheckPolicy(p, Policy{AllowedBindRoots: []string{"/srv"}})
	var got []string
	for _, x := range v {
		got = append(got, x.Setting+":"+x.Rule)
	}
	eq(t, "violations", got, []string{"cap_add:allow_capabilities", "volumes:allowed_bind_roots"})
	if len(v) == 2 {
		assertContains(t, v[1].Detail, "/etc")
	}
	if v := CheckPolicy(p, Policy{AllowedBindRoots: []string{"/srv", "/etc"}, AllowCapabilities: []string{"NET_ADMIN"}}); len(v) != 0 {
		t.Errorf("allowed stack still violates: %v", v)
	}
}

// TestStackHostObjectFile: a config from a host file under an allowed
// root is read on the manager and sent to the swarm.
func TestStackHostObjectFile(t *testing.T) {
	root := t.TempDir()
	if err := os.WriteFile(root+"/tls.pem", []byte("-----BEGIN CERT-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	opts := testOptions(writeRelease(t, map[string]string{"compose.yaml": "services:\n  web:\n    image: nginx:1.27\n    secrets: [tls]\nsecrets:\n  tls: {file: " + root + "/tls.pem}\n"}))
	opts.Swarm = true
	opts.HostFileRoots = []string{root}
	p := load(t, opts)
	o := p.Stack.Secrets[0]
	eq(t, "data", string(o.Data()), "-----BEGIN CERT-----\n")
	eq(t, "source", o.Source, root+"/tls.pem")
	opts.HostFileRoots = nil
	le := loadErr(t, opts)
	assertContains(t, le.Error(), "allowed_bind_roots", "secrets.tls.file")
}

// TestStackHostNetworkPolicy: attaching to the node's host network is
// what network_mode: host is on a single host, for the policy.
func TestStackHostNetworkPolicy(t *testing.T) {
	p := loadStack(t, map[string]string{"compose.yaml": "services:\n  web:\n    image: nginx:1.27\n    networks: [hostnet]\nnetworks:\n  hostnet: {external: true, name: host}\n"})
	eq(t, "attachment", stackService(t, p, "web").Spec.TaskTemplate.Networks, []swarm.NetworkAttachmentConfig{{Target: "host"}})
	v := CheckPolicy(p, Policy{})
	if len(v) != 1 || v[0].Rule != "allow_host_network" {
		t.Errorf("violations %v, want allow_host_network", v)
	}
	if v := CheckPolicy(p, Policy{AllowHostNetwork: true}); len(v) != 0 {
		t.Errorf("allowed host network still violates: %v", v)
	}
}
