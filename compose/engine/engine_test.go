package engine

import (
	"context"
	"errors"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/moby/moby/api/pkg/authconfig"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/jsonstream"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"

	"github.com/lockstep-gitops/lockstep/compose"
)

func TestSplitNetworks(t *testing.T) {
	eps := func(names ...string) map[string]*network.EndpointSettings {
		m := map[string]*network.EndpointSettings{}
		for _, n := range names {
			m[n] = &network.EndpointSettings{}
		}
		return m
	}
	tests := []struct {
		name        string
		mode        container.NetworkMode
		eps         map[string]*network.EndpointSettings
		wantPrimary string
		wantRest    []string
	}{
		{"none", "", nil, "", nil},
		{"one", "", eps("p_default"), "p_default", []string{}},
		{"mode names the primary", "p_front", eps("p_back", "p_front", "p_admin"), "p_front", []string{"p_admin", "p_back"}},
		{"mode names none: first by name", "bridge", eps("p_z", "p_a"), "p_a", []string{"p_z"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			primary, rest := splitNetworks(tc.mode, tc.eps)
			if primary != tc.wantPrimary || !slices.Equal(rest, tc.wantRest) {
				t.Fatalf("splitNetworks = %q %v, want %q %v", primary, rest, tc.wantPrimary, tc.wantRest)
			}
		})
	}
}

// TestNetworksAtCreate: from API 1.44 the create carries every endpoint;
// before, only the primary one, and the rest are connected afterwards.
func TestNetworksAtCreate(t *testing.T) {
	front, back := &network.EndpointSettings{Aliases: []string{"web"}}, &network.EndpointSettings{}
	eps := map[string]*network.EndpointSettings{"p_front": front, "p_back": back}
	tests := []struct {
		api       string
		wantNames []string
		wantLater []string
	}{
		{"1.41", []string{"p_front"}, []string{"p_back"}},
		{"1.43", []string{"p_front"}, []string{"p_back"}},
		{"1.44", []string{"p_back", "p_front"}, nil},
		{"1.56", []string{"p_back", "p_front"}, nil},
	}
	for _, tc := range tests {
		primary, atCreate, later := networksAtCreate(tc.api, "p_front", eps)
		if primary != "p_front" || !slices.Equal(slices.Sorted(maps.Keys(atCreate)), tc.wantNames) || !slices.Equal(later, tc.wantLater) {
			t.Errorf("API %s: primary %q, at create %v, later %v; want p_front, %v, %v", tc.api, primary, slices.Sorted(maps.Keys(atCreate)), later, tc.wantNames, tc.wantLater)
		}
		if atCreate["p_front"] != front {
			t.Errorf("API %s: the primary endpoint is not the service's", tc.api)
		}
	}
	if primary, atCreate, later := networksAtCreate("1.44", "container:abc", nil); primary != "" || atCreate != nil || later != nil {
		t.Errorf("no endpoints: %q %v %v, want nothing", primary, atCreate, later)
	}
}

func TestInheritAnonymousVolumes(t *testing.T) {
	old := []container.MountPoint{
		{Type: mount.TypeVolume, Name: "anon1", Destination: "/cache"},
		{Type: mount.TypeVolume, Name: "anon2", Destination: "/var/lib/db/"},
		{Type: mount.TypeVolume, Name: "anon3", Destination: "/legacy"},
		{Type: mount.TypeVolume, Name: "anon4", Destination: "/scratch"},
		{Type: mount.TypeVolume, Name: "p_data", Destination: "/data"},
		{Type: mount.TypeBind, Source: "/srv/conf", Destination: "/conf"},
	}
	tests := []struct {
		name          string
		cfgVolumes    map[string]struct{}
		mounts        []mount.Mount
		binds         []string
		imageVolumes  map[string]struct{}
		wantInherited []string
		wantMounts    []mount.Mount
		wantBinds     []string
		wantVolumes   []string // remaining Config.Volumes keys
	}{
		{
			name:          "config volume becomes a mount of the old volume",
			cfgVolumes:    map[string]struct{}{"/cache": {}, "/new": {}},
			wantInherited: []string{"anon1"},
			wantMounts:    []mount.Mount{{Type: mount.TypeVolume, Source: "anon1", Target: "/cache"}},
			wantVolumes:   []string{"/new"},
		},
		{
			name:          "sourceless volume mount gets the old name, keeps its options",
			mounts:        []mount.Mount{{Type: mount.TypeVolume, Target: "/var/lib/db", ReadOnly: true}},
			wantInherited: []string{"anon2"},
			wantMounts:    []mount.Mount{{Type: mount.TypeVolume, Source: "anon2", Target: "/var/lib/db", ReadOnly: true}},
		},
		{
			name:          "one-part bind is anonymous",
			binds:         []string{"/scratch", "/srv/conf:/conf:ro"},
			wantInherited: []string{"anon4"},
			wantBinds:     []string{"anon4:/scratch", "/srv/conf:/conf:ro"},
		},
		{
			name:          "image VOLUME is inherited unless the config mounts something there",
			mounts:        []mount.Mount{{Type: mount.TypeBind, Source: "/srv/x", Target: "/legacy"}},
			imageVolumes:  map[string]struct{}{"/legacy": {}, "/cache": {}},
			wantInherited: []string{"anon1"},
			wantMounts: []mount.Mount{
				{Type: mount.TypeBind, Source: "/srv/x", Target: "/legacy"},
				{Type: mount.TypeVolume, Source: "anon1", Target: "/cache"},
			},
		},
		{
			name:       "named volume and bind targets are never replaced",
			mounts:     []mount.Mount{{Type: mount.TypeVolume, Source: "p_other", Target: "/data"}},
			binds:      []string{"/srv/c:/cache"},
			cfgVolumes: map[string]struct{}{"/cache": {}},
			wantMounts: []mount.Mount{{Type: mount.TypeVolume, Source: "p_other", Target: "/data"}},
			wantBinds:  []string{"/srv/c:/cache"},
			// The engine resolves a Config.Volumes entry that a bind covers; it is left alone.
			wantVolumes: []string{"/cache"},
		},
		{
			name:          "declared twice, inherited once",
			cfgVolumes:    map[string]struct{}{"/cache": {}},
			imageVolumes:  map[string]struct{}{"/cache": {}},
			wantInherited: []string{"anon1"},
			wantMounts:    []mount.Mount{{Type: mount.TypeVolume, Source: "anon1", Target: "/cache"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			shared := map[string]struct{}{}
			for k := range tc.cfgVolumes {
				shared[k] = struct{}{}
			}
			cfg := &container.Config{Volumes: shared}
			host := &container.HostConfig{Mounts: slices.Clone(tc.mounts), Binds: slices.Clone(tc.binds)}
			got := inheritAnonymousVolumes(cfg, host, tc.imageVolumes, old)
			if !slices.Equal(got, tc.wantInherited) {
				t.Errorf("inherited %v, want %v", got, tc.wantInherited)
			}
			if !slices.EqualFunc(host.Mounts, tc.wantMounts, func(a, b mount.Mount) bool { return a == b }) {
				t.Errorf("mounts %+v, want %+v", host.Mounts, tc.wantMounts)
			}
			if !slices.Equal(host.Binds, tc.wantBinds) {
				t.Errorf("binds %v, want %v", host.Binds, tc.wantBinds)
			}
			var keys []string
			for k := range cfg.Volumes {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			if !slices.Equal(keys, tc.wantVolumes) {
				t.Errorf("config volumes %v, want %v", keys, tc.wantVolumes)
			}
			if len(shared) != len(tc.cfgVolumes) {
				t.Errorf("the service's shared Config.Volumes map was changed: %v", shared)
			}
		})
	}
}

func TestPullFailed(t *testing.T) {
	tests := []struct {
		name         string
		err          error
		wantNotFound bool
		wantDenied   bool
		wantIn       []string
	}{
		{
			name:         "missing tag in the stream",
			err:          &jsonstream.Error{Message: "manifest for 127.0.0.1:5000/app:nope not found: manifest unknown: manifest unknown"},
			wantNotFound: true,
			wantIn:       []string{"image 127.0.0.1:5000/app:nope not found in registry 127.0.0.1:5000", "manifest unknown"},
		},
		{
			name:       "hub denial",
			err:        &jsonstream.Error{Message: "pull access denied for private/app, repository does not exist or may require 'docker login': denied: requested access to the resource is denied"},
			wantDenied: true,
			wantIn:     []string{"denied access", "docker login"},
		},
		{
			name:       "no credentials for a registry that wants them",
			err:        errors.New(`Head "http://127.0.0.1:5000/v2/app/manifests/nope": no basic auth credentials`),
			wantDenied: true,
			wantIn:     []string{"denied access", "no basic auth credentials"},
		},
		{
			name:   "other registry trouble",
			err:    &jsonstream.Error{Message: "received unexpected HTTP status: 502 Bad Gateway"},
			wantIn: []string{"502 Bad Gateway"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ref := "127.0.0.1:5000/app:nope"
			err := pullFailed(ref, "127.0.0.1:5000", tc.err)
			var pe *PullError
			if !errors.As(err, &pe) {
				t.Fatalf("pullFailed returned %T, want *PullError", err)
			}
			if cerrdefs.IsNotFound(err) != tc.wantNotFound || errors.Is(err, cerrdefs.ErrUnauthenticated) != tc.wantDenied {
				t.Errorf("classified not-found=%v denied=%v, want %v %v", cerrdefs.IsNotFound(err), errors.Is(err, cerrdefs.ErrUnauthenticated), tc.wantNotFound, tc.wantDenied)
			}
			for _, s := range append(tc.wantIn, ref) {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
		})
	}
	if err := pullFailed("x", "docker.io", context.DeadlineExceeded); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a deadline is not the registry's word: got %v", err)
	}
}

type staticKeychain map[string]authn.Authenticator

func (k staticKeychain) Resolve(r authn.Resource) (authn.Authenticator, error) {
	if a, ok := k[r.RegistryStr()]; ok {
		return a, nil
	}
	return authn.Anonymous, nil
}

func TestRegistryAuth(t *testing.T) {
	kc := staticKeychain{
		"registry.example.com": authn.FromConfig(authn.AuthConfig{Username: "ci", Password: "s3cret"}),
		"index.docker.io":      authn.FromConfig(authn.AuthConfig{IdentityToken: "tok"}),
	}
	tests := []struct {
		reg  string
		want string // "" means anonymous
		user string
	}{
		{"registry.example.com", "s3cret", "ci"},
		{"docker.io", "", ""}, // token, checked below
		{"127.0.0.1:5000", "", ""},
	}
	for _, tc := range tests {
		got, err := registryAuth(context.Background(), kc, tc.reg)
		if err != nil {
			t.Fatalf("%s: %v", tc.reg, err)
		}
		if tc.reg == "127.0.0.1:5000" {
			if got != "" {
				t.Errorf("anonymous registry got auth header %q, want none", got)
			}
			continue
		}
		cfg, err := authconfig.Decode(got)
		if err != nil {
			t.Fatalf("%s: header %q does not decode as the engine decodes it: %v", tc.reg, got, err)
		}
		if cfg.Password != tc.want || cfg.Username != tc.user || cfg.ServerAddress != tc.reg {
			t.Errorf("%s: decoded %+v", tc.reg, cfg)
		}
		if tc.reg == "docker.io" && cfg.IdentityToken != "tok" {
			t.Errorf("docker.io: identity token lost: %+v", cfg)
		}
	}
}

func TestFromInspect(t *testing.T) {
	in := container.InspectResponse{
		ID:           "abc",
		Name:         "/p-web-2",
		Image:        "sha256:img",
		RestartCount: 4,
		State:        &container.State{Status: "running", ExitCode: 0, Health: &container.Health{Status: container.Healthy}},
		Config: &container.Config{Image: "reg/web:1", Labels: map[string]string{
			compose.LabelService: "web", compose.LabelContainerNumber: "2", compose.LabelHash: "h",
			compose.LabelConfigHash: "ch", compose.LabelCommit: "c0ffee", compose.LabelWorkingDir: "/rel/c0ffee",
			compose.LabelSpecHash: "sh",
		}},
	}
	got := fromInspect(in)
	want := compose.Container{
		ID: "abc", Name: "p-web-2", Service: "web", Number: 2, State: "running", Health: "healthy",
		RestartCount: 4, Image: "reg/web:1", ImageID: "sha256:img", Hash: "h", ConfigHash: "ch",
		SpecHash: "sh", Commit: "c0ffee", WorkingDir: "/rel/c0ffee",
	}
	got.Labels = nil
	if got.ID != want.ID || got.Name != want.Name || got.Service != want.Service || got.Number != want.Number ||
		got.State != want.State || got.Health != want.Health || got.RestartCount != want.RestartCount ||
		got.Image != want.Image || got.ImageID != want.ImageID || got.Hash != want.Hash ||
		got.ConfigHash != want.ConfigHash || got.SpecHash != want.SpecHash || got.Commit != want.Commit || got.WorkingDir != want.WorkingDir {
		t.Fatalf("fromInspect = %+v\nwant %+v", got, want)
	}

	if got.Networks != nil {
		t.Errorf("container without network settings: Networks = %v, want none", got.Networks)
	}
	in.NetworkSettings = &container.NetworkSettings{Networks: map[string]*network.EndpointSettings{
		"p_backend": {NetworkID: "n1", Aliases: []string{"web", "abc"}},
		"p_gone":    nil,
	}}
	got = fromInspect(in)
	wantNets := map[string]compose.Endpoint{"p_backend": {NetworkID: "n1", Aliases: []string{"web", "abc"}}}
	if !reflect.DeepEqual(got.Networks, wantNets) {
		t.Errorf("Networks = %+v, want %+v", got.Networks, wantNets)
	}

	in.State = &container.State{Status: "exited", ExitCode: 3, Health: &container.Health{Status: container.NoHealthcheck}}
	in.Config.Labels[compose.LabelContainerNumber] = "x"
	got = fromInspect(in)
	if got.Health != "" || got.ExitCode != 3 || got.Number != 0 {
		t.Fatalf("exited container without healthcheck and a bad number label: %+v", got)
	}
}

func TestRedactHost(t *testing.T) {
	for in, want := range map[string]string{
		"":                            "the default address",
		"unix:///var/run/docker.sock": "unix:///var/run/docker.sock",
		"tcp://admin:hunter2@h:2376":  "tcp://admin@h:2376",
	} {
		if got := redactHost(in); got != want {
			t.Errorf("redactHost(%q) = %q, want %q", in, got, want)
		}
	}
}

// A container without lockstep.hash carries what it was created with, for
// the plan to explain a takeover; environment values only as digests. One
// of lockstep's carries nothing more (a converged project costs nothing).
func TestFromInspectSpecOfAComposeContainer(t *testing.T) {
	in := container.InspectResponse{
		ID: "abc", Name: "/p-web-1",
		Config: &container.Config{Image: "web", Env: []string{"PASSWORD=hunter2", "PATH=/bin"}, Cmd: []string{"serve"},
			Labels: map[string]string{compose.LabelService: "web", compose.LabelContainerNumber: "1"}},
		HostConfig: &container.HostConfig{PortBindings: network.PortMap{
			network.MustParsePort("80/tcp"): {{HostPort: "8080"}},
		}},
		Mounts: []container.MountPoint{
			{Type: mount.TypeVolume, Name: "p_data", Source: "/var/lib/docker/volumes/p_data/_data", Destination: "/data"},
			{Type: mount.TypeBind, Source: "/srv/app/nginx.conf", Destination: "/etc/nginx/nginx.conf"},
		},
	}
	got := fromInspect(in)
	if got.Spec == nil {
		t.Fatal("no Spec for a container lockstep did not create")
	}
	wantMounts := []compose.SpecMount{
		{Type: "volume", Source: "p_data", Target: "/data"},
		{Type: "bind", Source: "/srv/app/nginx.conf", Target: "/etc/nginx/nginx.conf"},
	}
	if !reflect.DeepEqual(got.Spec.Mounts, wantMounts) || !slices.Equal(got.Spec.Ports, []string{"8080:80/tcp"}) ||
		!slices.Equal(got.Spec.Cmd, []string{"serve"}) || got.Spec.Env["PASSWORD"] != compose.EnvDigest("hunter2") {
		t.Fatalf("Spec = %+v", got.Spec)
	}
	for _, d := range got.Spec.Env {
		if strings.Contains(d, "hunter2") {
			t.Fatalf("an environment value is carried: %v", got.Spec.Env)
		}
	}
	in.Config.Labels[compose.LabelHash] = "h"
	if got := fromInspect(in); got.Spec != nil {
		t.Fatalf("lockstep's own container got a Spec: %+v", got.Spec)
	}
}
