package compose

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"

	"github.com/compose-spec/compose-go/v2/dotenv"
	"github.com/compose-spec/compose-go/v2/types"
)

// resolveEnvironments sets every service's final environment: what
// compose-go computes when it resolves environments itself (it is told not
// to, see Load), except that env files ending in .age are decrypted first.
// TestResolveEnvironmentMatchesCompose holds the two to the same result.
//
// roots are the host directories an env_file outside the release may be
// read from (see hostEnvFile).
func resolveEnvironments(cp *types.Project, src *sources, k *keyring, roots []string) error {
	for _, name := range sortedKeys(cp.Services) {
		s := cp.Services[name]
		env, err := serviceEnvironment(name, s.Environment, s.EnvFiles, cp.Environment, src, k, roots)
		if err != nil {
			return err
		}
		s.Environment = env
		cp.Services[name] = s
	}
	return nil
}

// serviceEnvironment computes one service's environment, in compose's
// order:
//
//  1. an `environment:` entry without a value (`- NAME`) takes its value
//     from the interpolation environment, if set there;
//  2. the env files are read in order, later ones overriding earlier ones;
//     a `required: false` file that does not exist is skipped. A variable
//     referenced inside one (B=${A}) is looked up in the interpolation
//     environment first, then in the service's `environment:`, then in
//     what the env files set so far;
//  3. `environment:` wins over every env file, including a bare name that
//     step 1 could not resolve (the container gets it unset).
//
// Env files ending in .age are decrypted; their syntax errors are reported
// by line only, and the values they set are remembered by k.
func serviceEnvironment(service string, environment types.MappingWithEquals, envFiles []types.EnvFile, projectEnv types.Mapping,
	src *sources, k *keyring, roots []string) (types.MappingWithEquals, error) {
	explicit := types.MappingWithEquals{}
	for name, v := range environment {
		if v == nil {
			if pv, ok := projectEnv[name]; ok {
				v = &pv
			}
		}
		explicit[name] = v
	}

	vars := map[string]string{}
	for name, v := range explicit {
		if v != nil {
			vars[name] = *v
		}
	}
	lookup := func(name string) (string, bool) {
		if v, ok := projectEnv[name]; ok {
			return v, true
		}
		if v, ok := explicit[name]; ok && v != nil {
			return *v, true
		}
		return "", false
	}
	for _, ef := range envFiles {
		if err := readServiceEnvFile(service, ef, vars, lookup, src, k, roots); err != nil {
			return nil, err
		}
	}

	out := types.MappingWithEquals{}
	for name, v := range vars {
		out[name] = &v
	}
	for name, v := range explicit {
		out[name] = v
	}
	return out, nil
}

// readServiceEnvFile reads one env_file of service into vars: a host file (under
// roots), a plain file of the release, or an age-encrypted one whose
// values the keyring remembers so errors and logs never show them.
func readServiceEnvFile(service string, ef types.EnvFile, vars map[string]string, lookup func(string) (string, bool),
	src *sources, k *keyring, roots []string) error {
	rel := src.rel(ef.Path)
	switch ef.Format {
	case "", dotenv.DotEnv:
	default:
		return located(src, service, "env_file", fmt.Sprintf("%s: format %q is not supported by lockstep; remove format: to use the dotenv format", rel, ef.Format))
	}
	if !within(src.releaseDir, ef.Path) {
		skip, err := hostEnvFile(src, service, ef, roots)
		if err != nil || skip {
			return err
		}
		return forService(parseHostEnvFile(service, ef, vars, lookup, k), service, "env_file")
	}
	if err := src.needs.need(ef.Path); err != nil {
		return forService(err, service, "env_file")
	}
	if _, err := os.Stat(ef.Path); err != nil {
		if errors.Is(err, os.ErrNotExist) && !bool(ef.Required) {
			return nil
		}
		return located(src, service, "env_file", rel+" is not in the release at this commit; add it to the repository, fix env_file, or mark it required: false")
	}
	if !isEncrypted(ef.Path) {
		return parseEnvFile(service, rel, ef, vars, lookup)
	}
	plain, err := k.decrypt(ef.Path, rel)
	if err != nil {
		return forService(err, service, "env_file")
	}
	before := maps.Clone(vars)
	if err := dotenv.ParseWithFormat(bytes.NewReader(plain), rel, vars, lookup, ef.Format); err != nil {
		return forService(secretSyntaxError(rel, err), service, "env_file")
	}
	set := map[string]string{}
	for name, v := range vars {
		if old, ok := before[name]; !ok || old != v {
			set[name] = v
		}
	}
	k.remember(rel, set)
	return nil
}

// parseEnvFile reads one plain env_file of service into vars, refusing it
// over gitsource.MaxEnvFileBytes before it is read.
func parseEnvFile(service, rel string, ef types.EnvFile, vars map[string]string, lookup func(string) (string, bool)) error {
	f, err := os.Open(ef.Path)
	if err != nil {
		return &LoadError{File: rel, Service: service, Key: "env_file", Msg: fmt.Sprintf("cannot read env file: %v", err), Err: err}
	}
	defer f.Close()
	if err := envFileSize(f); err != nil {
		return &LoadError{File: rel, Service: service, Key: "env_file", Msg: err.Error(), Err: err}
	}
	if err := dotenv.ParseWithFormat(f, rel, vars, lookup, ef.Format); err != nil {
		return &LoadError{File: rel, Line: lineFromMessage(err.Error()), Service: service, Key: "env_file", Msg: strings.TrimPrefix(err.Error(), "failed to read "+rel+": ") + "; fix the env file", Err: err}
	}
	return nil
}

// forService names the service and key in a *LoadError about a file the
// service uses (a copy: decryption errors are shared by the keyring).
func forService(err error, service, key string) error {
	var le *LoadError
	if !errors.As(err, &le) || strings.HasPrefix(le.Key, "[secrets]") {
		return err // not about the file, or about the host's identity file
	}
	out := *le
	out.Service, out.Key = service, key
	return &out
}

// hostEnvFile decides whether the loader may read ef, an env_file outside
// the release (an absolute path, written as such or built by
// interpolation): only a regular file under one of roots, which are
// [policy].allowed_bind_roots. The loader reads it itself, before the
// policy step and in validate and plan too, so the check cannot be a
// warn-mode warning: a compose file from git naming /dev/zero or
// /etc/shadow would make the agent read it. A file a container could bind
// it may read as environment, which gives it nothing more. skip is true
// for a missing file marked required: false.
func hostEnvFile(src *sources, service string, ef types.EnvFile, roots []string) (skip bool, err error) {
	fail := func(msg string) (bool, error) { return false, located(src, service, "env_file", msg) }
	p := filepath.Clean(ef.Path)
	allowed := bindRoots("", roots)
	if !underAny(p, allowed) || !underAny(resolve(p), allowed) {
		return fail(fmt.Sprintf("host path %q refused: lockstep reads host files only under [policy].allowed_bind_roots = %s; add its directory there, reference a file of the repository by relative path, or put host-local values in the agent config's env_files", ef.Path, tomlList(roots)))
	}
	st, err := os.Stat(p)
	switch {
	case errors.Is(err, os.ErrNotExist) && !bool(ef.Required):
		return true, nil
	case err != nil:
		return fail(fmt.Sprintf("host env file %s cannot be read: %v; create it on the host, fix env_file, or mark it required: false", p, pathReason(err)))
	case !st.Mode().IsRegular():
		return fail(fmt.Sprintf("host env file %s is not a regular file (%v); point env_file at a file", p, st.Mode().Type()))
	}
	return false, nil
}

// parseHostEnvFile reads a host env file (see hostEnvFile) into vars. Such
// a file holds what is kept out of git, secrets mostly: its values are
// redacted from errors like decrypted ones, and its syntax errors say only
// the line.
func parseHostEnvFile(service string, ef types.EnvFile, vars map[string]string, lookup func(string) (string, bool), k *keyring) error {
	f, err := os.Open(ef.Path)
	if err != nil {
		return &LoadError{File: ef.Path, Service: service, Key: "env_file", Msg: fmt.Sprintf("cannot read env file: %v", pathReason(err)), Err: err}
	}
	defer f.Close()
	if err := envFileSize(f); err != nil {
		return &LoadError{File: ef.Path, Service: service, Key: "env_file", Msg: err.Error(), Err: err}
	}
	before := maps.Clone(vars)
	if err := dotenv.ParseWithFormat(f, ef.Path, vars, lookup, ef.Format); err != nil {
		return &LoadError{File: ef.Path, Line: lineFromMessage(err.Error()), Service: service, Key: "env_file",
			Msg: "invalid dotenv syntax or variable reference (details withheld: host env files hold secrets); fix the file on the host"}
	}
	set := map[string]string{}
	for name, v := range vars {
		if old, ok := before[name]; !ok || old != v {
			set[name] = v
		}
	}
	k.remember(ef.Path, set)
	return nil
}
