package compose

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
)

// TestResolveEnvironmentMatchesCompose holds serviceEnvironment to what
// compose-go's own WithServicesEnvironmentResolved computes for plain env
// files, so lockstep's resolution (needed to decrypt .age env files)
// cannot drift from compose's rules: bare environment entries, env file
// order and overrides, lookups inside env files (interpolation env, then
// the service's environment, then earlier lines and files), optional
// missing files, and environment: winning over env files.
func TestResolveEnvironmentMatchesCompose(t *testing.T) {
	dir := writeRelease(t, map[string]string{
		"compose.yaml": `services:
  full:
    image: a:1
    environment:
      EXPLICIT: explicit
      BARE_SET:
      BARE_UNSET:
      OVERRIDE: from-environment
      EMPTY: ""
      BOTH: from-environment
    env_file:
      - one.env
      - path: two.env
      - path: missing.env
        required: false
  filesonly:
    image: b:1
    env_file: [two.env, one.env]
  envonly:
    image: c:1
    environment: [ONLY=1, BARE_SET, NOWHERE]
  nothing:
    image: d:1
`,
		".env": "PROJ=proj\nBARE_SET=from-project\nSHADOWED=project\nINHERIT=inherited\nBOTH=from-project\n",
		"one.env": `# comment
FROM_ONE=1
OVERRIDE=from-one
BARE_UNSET=from-one
SHARED=one
SHADOWED=one
REF_PROJECT=${PROJ}
REF_EXPLICIT=${EXPLICIT:-none}
REF_EARLIER=${FROM_ONE}-x
REF_SHADOWED=${SHADOWED}
REF_DEFAULT=${NOT_ANYWHERE:-dflt}
REF_BOTH=${BOTH}
INHERIT
UNKNOWN_BARE
EMPTY=from-one
`,
		"two.env": `SHARED=two
REF_SHARED=${SHARED}
QUOTED="a b ${PROJ} \n"
SINGLE='${PROJ}'
export EXPORTED=yes
INLINE=value # comment
`,
	})
	opts := testOptions(dir)
	env, err := interpolationEnv(opts, newKeyring(SecretOptions{}))
	if err != nil {
		t.Fatal(err)
	}
	loadWith := func(skip bool) *types.Project {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		details := types.ConfigDetails{WorkingDir: dir, ConfigFiles: types.ToConfigFiles([]string{dir + "/compose.yaml"}), Environment: env}
		p, err := loader.LoadWithContext(ctx, details, func(o *loader.Options) {
			o.SetProjectName("p", true)
			o.SkipResolveEnvironment = skip
		})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	theirs := loadWith(false)
	raw := loadWith(true)

	src := &sources{releaseDir: dir}
	for _, name := range sortedKeys(raw.Services) {
		s := raw.Services[name]
		ours, err := serviceEnvironment(name, s.Environment, s.EnvFiles, raw.Environment, src, newKeyring(SecretOptions{}), nil)
		if err != nil {
			t.Fatalf("service %s: %v", name, err)
		}
		want := theirs.Services[name].Environment
		if len(want) == 0 && len(ours) == 0 {
			continue
		}
		if !reflect.DeepEqual(ours, want) {
			t.Errorf("service %s:\nlockstep %v\ncompose  %v", name, dump(ours), dump(want))
		}
	}

	// And end to end: Load's container env is compose's.
	p := load(t, opts)
	for _, svc := range p.Services {
		if want := envList(theirs.Services[svc.Name].Environment); !reflect.DeepEqual(svc.Config.Env, want) {
			t.Errorf("Load: service %s Env = %q, compose %q", svc.Name, svc.Config.Env, want)
		}
	}
	// A sanity check that the fixture exercises what it claims to.
	full := envList(theirs.Services["full"].Environment)
	for _, want := range []string{"BARE_SET=from-project", "BARE_UNSET", "OVERRIDE=from-environment", "REF_SHADOWED=project",
		"REF_EXPLICIT=explicit", "SHARED=two", "INHERIT=inherited", "EMPTY=", "REF_BOTH=from-project"} {
		if !containsString(full, want) {
			t.Errorf("fixture does not produce %q: %q", want, full)
		}
	}
}

func TestEnvFileErrors(t *testing.T) {
	tests := []struct {
		name, compose string
		files         map[string]string
		want          []string
	}{
		{"required file missing", "services:\n  app:\n    image: a:1\n    env_file: [missing.env]\n", nil,
			[]string{`compose.yaml:4: service "app": env_file: missing.env is not in the release`, "required: false"}},
		{"unsupported format", "services:\n  app:\n    image: a:1\n    env_file:\n      - path: app.env\n        format: raw\n",
			map[string]string{"app.env": "A=1\n"}, []string{`service "app": env_file: app.env: format "raw" is not supported`}},
		{"syntax", "services:\n  app:\n    image: a:1\n    env_file: app.env\n",
			map[string]string{"app.env": "A=1\nB C=2\n"}, []string{`app.env:2: service "app": env_file:`, "fix the env file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files := map[string]string{"compose.yaml": tt.compose}
			for k, v := range tt.files {
				files[k] = v
			}
			le := loadErr(t, testOptions(writeRelease(t, files)))
			assertContains(t, le.Error(), tt.want...)
		})
	}
}

func dump(m types.MappingWithEquals) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		if v == nil {
			out[k] = "<nil>"
		} else {
			out[k] = *v
		}
	}
	return out
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
