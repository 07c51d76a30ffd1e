package bench

// Trust benchmarks: what signature verification, the min_commit floor and
// age decryption cost, each against a baseline measured in the same run on
// the same data, so the figures to quote are the ratios. Reproduce with
//
//	go test -run '^$' -bench 'Verify|Floor|Decrypt' -benchtime 20x ./bench/
//
// They need git, ssh-keygen and gpg (and a tmpfs at /dev/shm for the
// decryption benchmark), not the Docker engine. Without a tool they skip
// loudly; under CI=true they fail instead.

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/lockstep-gitops/lockstep/compose"
	"github.com/lockstep-gitops/lockstep/e2e/gitserver"
	"github.com/lockstep-gitops/lockstep/e2e/harness"
	"github.com/lockstep-gitops/lockstep/gitsource"
)

// isolatedGit is the environment real git runs with here: no user or
// system configuration, a fixed identity.
func isolatedGit(extra ...string) []string {
	return append(append(os.Environ(),
		"GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1", "GIT_TERMINAL_PROMPT=0",
		"GIT_AUTHOR_NAME=lockstep bench", "GIT_AUTHOR_EMAIL=bench@lockstep.invalid",
		"GIT_COMMITTER_NAME=lockstep bench", "GIT_COMMITTER_EMAIL=bench@lockstep.invalid"), extra...)
}

// runIn runs a program in dir with env and returns its stdout; any failure
// stops the benchmark with the program's stderr.
func runIn(b *testing.B, dir string, env []string, name string, args ...string) string {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir, cmd.Env = dir, env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		b.Fatalf("%s %s (in %s): %v\n%s", name, strings.Join(args, " "), dir, err, stderr.String())
	}
	return stdout.String()
}

// timed runs f and returns how long it took.
func timed(f func()) time.Duration {
	start := time.Now()
	f()
	return time.Since(start)
}

// newTrustSource is a Source over url with a fresh cache in stateDir.
func newTrustSource(b *testing.B, url, stateDir string, verify gitsource.VerifyOptions) *gitsource.Source {
	b.Helper()
	src, err := gitsource.New(gitsource.Options{URL: url, StateDir: stateDir, Timeout: time.Minute, Log: zerolog.Nop(), Verify: verify})
	if err != nil {
		b.Fatalf("gitsource.New: %v", err)
	}
	return src
}

// sshSigning makes an ed25519 key with ssh-keygen and an allowed signers
// file trusting it for git. It returns the gitserver signing config and
// the allowed signers file.
func sshSigning(b *testing.B, dir string) (config []string, allowedSigners string) {
	b.Helper()
	keygen := harness.RequireTool(b, "ssh-keygen", "openssh-client")
	key := filepath.Join(dir, "signing_ed25519")
	runIn(b, dir, os.Environ(), keygen, "-q", "-t", "ed25519", "-N", "", "-C", "bench@lockstep.invalid", "-f", key)
	pub, err := os.ReadFile(key + ".pub")
	if err != nil {
		b.Fatal(err)
	}
	allowedSigners = filepath.Join(dir, "allowed_signers")
	writeFile(b, allowedSigners, `bench@lockstep.invalid namespaces="git" `+strings.TrimSpace(string(pub))+"\n")
	return []string{"gpg.format=ssh", "user.signingkey=" + key}, allowedSigners
}

// pgpSigning makes an ed25519 signing key in a throwaway GnuPG home (short
// path: gpg-agent's socket must fit in ~100 bytes; the agent is killed at
// the end) and exports its public key armored. It returns the gitserver
// signing config and environment, and the keyring file.
func pgpSigning(b *testing.B, dir string) (config, env []string, keyring string) {
	b.Helper()
	gpg := harness.RequireTool(b, "gpg", "gnupg")
	gpgconf := harness.RequireTool(b, "gpgconf", "gnupg")
	home, err := os.MkdirTemp("", "gpg")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		cmd := exec.Command(gpgconf, "--kill", "gpg-agent")
		cmd.Env = append(os.Environ(), "GNUPGHOME="+home)
		_ = cmd.Run()
		_ = os.RemoveAll(home)
	})
	env = []string{"GNUPGHOME=" + home}
	gpgRun := func(args ...string) string {
		return runIn(b, home, append(os.Environ(), env...), gpg,
			append([]string{"--batch", "--pinentry-mode", "loopback", "--passphrase", ""}, args...)...)
	}
	uid := "lockstep bench <bench@lockstep.invalid>"
	gpgRun("--quick-gen-key", uid, "ed25519", "sign", "never")
	var fpr string
	for line := range strings.SplitSeq(gpgRun("--with-colons", "--list-keys", uid), "\n") {
		if f := strings.Split(line, ":"); f[0] == "fpr" && len(f) > 9 && fpr == "" {
			fpr = f[9]
		}
	}
	if fpr == "" {
		b.Fatalf("gpg did not list the key it made for %s", uid)
	}
	keyring = filepath.Join(dir, "trusted.asc")
	writeFile(b, keyring, gpgRun("--export", "--armor", fpr))
	return []string{"gpg.format=openpgp", "user.signingkey=" + fpr}, env, keyring
}

// BenchmarkVerifyCommit is one signature check as a pass makes it:
// gitsource.Source.VerifyCommit of a commit signed by real `git commit -S`
// with an ssh-keygen ed25519 key and with a gpg ed25519 key, against
// `git verify-commit` of the same commit (which runs ssh-keygen or gpg).
// ns/op is lockstep's check alone; lockstep/git below 1 means faster.
//
//	go test -run '^$' -bench 'VerifyCommit' -benchtime 20x ./bench/
func BenchmarkVerifyCommit(b *testing.B) {
	harness.RequireTool(b, "git", "git")
	b.Run("ssh-ed25519", func(b *testing.B) {
		dir := b.TempDir()
		config, signers := sshSigning(b, dir)
		benchVerify(b, nil, config, gitsource.VerifyOptions{SSHAllowedSigners: signers},
			[]string{"-c", "gpg.ssh.allowedSignersFile=" + signers}, nil, "ssh")
	})
	b.Run("openpgp-ed25519", func(b *testing.B) {
		dir := b.TempDir()
		config, env, keyring := pgpSigning(b, dir)
		benchVerify(b, env, config, gitsource.VerifyOptions{OpenPGPKeyring: keyring}, nil, env, "openpgp")
	})
}

func benchVerify(b *testing.B, signEnv, signConfig []string, verify gitsource.VerifyOptions, gitArgs, gitEnv []string, kind string) {
	srv := gitserver.Start(b, gitserver.Options{})
	srv.Signing(signEnv, signConfig...)
	sha := srv.Commit(b, "signed release", map[string]string{"compose.yaml": "services:\n  app:\n    image: app:1\n"})
	src := newTrustSource(b, srv.URL, b.TempDir(), verify)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if head, err := src.Fetch(ctx); err != nil || head != sha {
		b.Fatalf("Fetch: %s, %v; want %s", head, err, sha)
	}
	gitVerify := append(append([]string{}, gitArgs...), "verify-commit", sha)
	env := isolatedGit(gitEnv...)
	// Once each untimed: both paths warm (page cache, gpg's trustdb).
	if _, err := src.VerifyCommit(sha, gitsource.RolePinned); err != nil {
		b.Fatalf("VerifyCommit: %v", err)
	}
	runIn(b, srv.BareDir, env, "git", gitVerify...)

	var lockstep, git time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var signer gitsource.Signer
		var err error
		lockstep += timed(func() { signer, err = src.VerifyCommit(sha, gitsource.RolePinned) })
		if err != nil || signer.Kind != kind {
			b.Fatalf("VerifyCommit %s: signer %+v, %v; want a %s signer", sha, signer, err, kind)
		}
		b.StopTimer()
		git += timed(func() { runIn(b, srv.BareDir, env, "git", gitVerify...) })
		b.StartTimer()
	}
	b.ReportMetric(float64(lockstep.Microseconds())/float64(b.N), "lockstep-µs/verify")
	b.ReportMetric(float64(git.Microseconds())/float64(b.N), "git-µs/verify")
	b.ReportMetric(lockstep.Seconds()/git.Seconds(), "lockstep/git")
}

// BenchmarkVerifyValidate is what [repo.verify] adds to a whole no-op
// pass: `lockstep validate` (the git half of `lockstep plan` and the
// compose load, without the engine, which plan needs) of an SSH-signed
// branch whose head pins itself, with verification of both head and pin,
// against the same command with [repo.verify] absent. Each has its own
// warm cache.
//
//	go test -run '^$' -bench 'VerifyValidate' -benchtime 20x ./bench/
func BenchmarkVerifyValidate(b *testing.B) {
	harness.RequireTool(b, "git", "git")
	dir := b.TempDir()
	config, signers := sshSigning(b, dir)
	srv := gitserver.Start(b, gitserver.Options{})
	srv.Signing(nil, config...)
	release := srv.Commit(b, "release", map[string]string{"compose.yaml": "services:\n  app:\n    image: example.invalid/app:1\n"})
	srv.Commit(b, "pin", map[string]string{"environments/bench.toml": fmt.Sprintf("commit = %q\n", release)})
	bin := buildLockstep(b)
	cfg := func(name, verify string) string {
		p := filepath.Join(dir, name+".toml")
		writeFile(b, p, fmt.Sprintf("state_dir = %q\n[repo]\nurl = %q\n%s[[environment]]\nname = \"bench\"\nproject = \"lsbench\"\n",
			b.TempDir(), srv.URL, verify))
		return p
	}
	verified := cfg("verified", fmt.Sprintf("[repo.verify]\nssh_allowed_signers = %q\n", signers))
	plain := cfg("plain", "")
	validate := func(config string) string {
		return runIn(b, dir, []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, bin, "--config", config, "validate", "--json", "bench")
	}
	// First runs untimed: fetch and materialize into each cache. The
	// verified one must say who signed.
	if out := validate(verified); !strings.Contains(out, "signed by") {
		b.Fatalf("validate with [repo.verify] does not report a signer:\n%s", out)
	}
	validate(plain)

	var withVerify, without time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// Alternate which runs first, so neither always meets a warmer
		// machine.
		if i%2 == 1 {
			b.StopTimer()
			without += timed(func() { validate(plain) })
			b.StartTimer()
		}
		withVerify += timed(func() { validate(verified) })
		if i%2 == 0 {
			b.StopTimer()
			without += timed(func() { validate(plain) })
			b.StartTimer()
		}
	}
	b.ReportMetric(withVerify.Seconds()*1e3/float64(b.N), "verified-ms/validate")
	b.ReportMetric(without.Seconds()*1e3/float64(b.N), "unverified-ms/validate")
	b.ReportMetric((withVerify-without).Seconds()*1e3/float64(b.N), "added-ms/validate")
	b.ReportMetric(withVerify.Seconds()/without.Seconds(), "verified/unverified")
}

// BenchmarkFloor200 is the min_commit check when the floor is 200 commits
// below the pinned branch head: Source.CheckFloor on a cache that has
// only the head (depth 1, as Fetch leaves it), which deepens, then again
// on the now deep enough cache, against `git merge-base --is-ancestor` in
// a full clone. The full clone's own time is reported for scale. Both a
// server that sends commits by SHA and one with git's default (it
// refuses) are measured: the second needs more deepening.
//
//	go test -run '^$' -bench 'Floor' -benchtime 20x ./bench/
func BenchmarkFloor200(b *testing.B) {
	harness.RequireTool(b, "git", "git")
	for _, c := range []struct {
		name  string
		bySHA bool
	}{{"sha-in-want", true}, {"git-default", false}} {
		b.Run(c.name, func(b *testing.B) { benchFloor(b, c.bySHA) })
	}
}

func benchFloor(b *testing.B, bySHA bool) {
	const below = 200
	srv := gitserver.Start(b, gitserver.Options{AllowSHA1InWant: bySHA})
	srv.Commit(b, "root", map[string]string{"compose.yaml": "services:\n  app:\n    image: app:1\n"})
	floor := srv.Commit(b, "floor", map[string]string{"VERSION": "0"})
	for i := 1; i <= below; i++ {
		srv.Git(b, "commit", "--quiet", "--allow-empty", "--no-gpg-sign", "-m", fmt.Sprintf("release %d", i))
	}
	srv.Git(b, "push", "--quiet", "origin", "HEAD:refs/heads/main")
	pin := srv.Head(b)
	if n := strings.TrimSpace(srv.Git(b, "rev-list", "--count", floor+".."+pin)); n != fmt.Sprint(below) {
		b.Fatalf("the pin is %s commits above the floor, want %d", n, below)
	}
	clone := filepath.Join(b.TempDir(), "full")
	env := isolatedGit()
	runIn(b, "/", env, "git", "clone", "--quiet", "--bare", srv.URL, clone)
	isAncestor := func() { runIn(b, clone, env, "git", "merge-base", "--is-ancestor", floor, pin) }
	isAncestor()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	states := b.TempDir()
	var cold, warm, git, fullClone time.Duration
	fetches := 0 // upload-pack requests of the shallow checks
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		src := newTrustSource(b, srv.URL, filepath.Join(states, fmt.Sprint(i)), gitsource.VerifyOptions{})
		if head, err := src.Fetch(ctx); err != nil || head != pin {
			b.Fatalf("Fetch: %s, %v; want %s", head, err, pin)
		}
		srv.ResetStats()
		b.StartTimer()
		var err error
		cold += timed(func() { err = src.CheckFloor(ctx, floor, pin) })
		if err != nil {
			b.Fatalf("CheckFloor on the shallow cache: %v", err)
		}
		b.StopTimer()
		fetches += srv.Stats().UploadPacks
		srv.ResetStats()
		b.StartTimer()
		warm += timed(func() { err = src.CheckFloor(ctx, floor, pin) })
		b.StopTimer()
		if err != nil {
			b.Fatalf("CheckFloor on the deepened cache: %v", err)
		}
		if st := srv.Stats(); st.Requests != 0 {
			b.Fatalf("the second CheckFloor went to the server (%+v); it should decide from the cache", st)
		}
		git += timed(isAncestor)
		dst := filepath.Join(states, fmt.Sprintf("clone-%d", i))
		fullClone += timed(func() { runIn(b, "/", env, "git", "clone", "--quiet", "--bare", srv.URL, dst) })
		if err := os.RemoveAll(filepath.Join(states, fmt.Sprint(i))); err != nil {
			b.Fatal(err)
		}
		if err := os.RemoveAll(dst); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	n := float64(b.N)
	b.ReportMetric(cold.Seconds()*1e3/n, "shallow-ms/check")
	b.ReportMetric(float64(fetches)/n, "fetches/shallow-check")
	b.ReportMetric(warm.Seconds()*1e3/n, "warm-ms/check")
	b.ReportMetric(git.Seconds()*1e3/n, "git-is-ancestor-ms")
	b.ReportMetric(fullClone.Seconds()*1e3/n, "git-full-clone-ms")
	b.ReportMetric(cold.Seconds()/git.Seconds(), "shallow/git")
	b.ReportMetric(warm.Seconds()/git.Seconds(), "warm/git")
}

// BenchmarkDecryptLoad20 is compose.Load of a 20-service release where
// every service has an age-encrypted env_file and an age-encrypted secret
// (materialized on a tmpfs under /dev/shm), and the pin names an encrypted
// env file, against the same release with the same contents in plain
// files. ns/op is the encrypted load; decrypt/plain above 1 is the cost.
// Loads after the first find their secret files already on the tmpfs, as
// the agent's passes do.
//
//	go test -run '^$' -bench 'DecryptLoad' -benchtime 20x ./bench/
func BenchmarkDecryptLoad20(b *testing.B) {
	const services = 20
	var st unix.Statfs_t
	if err := unix.Statfs("/dev/shm", &st); err != nil || (uint32(st.Type) != uint32(unix.TMPFS_MAGIC) && uint32(st.Type) != uint32(unix.RAMFS_MAGIC)) {
		msg := fmt.Sprintf("SKIPPING: /dev/shm is not a tmpfs here (statfs: %v); decrypted secrets are only written to a tmpfs, so this benchmark needs one", err)
		if os.Getenv("CI") == "true" {
			b.Fatal("CI=true but " + msg)
		}
		b.Skip(msg)
	}
	shm, err := os.MkdirTemp("/dev/shm", "lockstep-bench-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(shm) })

	id, err := age.GenerateX25519Identity()
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	idFile := filepath.Join(dir, "age.key")
	if err := os.WriteFile(idFile, []byte("# public key: "+id.Recipient().String()+"\n"+id.String()+"\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	encrypt := func(plain string) string {
		var buf bytes.Buffer
		w, err := age.Encrypt(&buf, id.Recipient())
		if err != nil {
			b.Fatal(err)
		}
		if _, err := w.Write([]byte(plain)); err != nil {
			b.Fatal(err)
		}
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
		return buf.String()
	}

	// release writes the project with file names ending in suffix (".age"
	// for the encrypted one), the contents given by content.
	release := func(name, suffix string, content func(string) string) compose.LoadOptions {
		root := filepath.Join(dir, name)
		files := map[string]string{"pin.env" + suffix: content("REGION=eu-west-1\nPIN_TOKEN=pin-token-4f2a9c1e\n")}
		var y strings.Builder
		y.WriteString("services:\n")
		for i := 0; i < services; i++ {
			fmt.Fprintf(&y, "  svc%02d:\n    image: example.invalid/app:1\n    environment:\n      REGION: ${REGION}\n    env_file: [svc%02d.env%s]\n    secrets: [s%02d]\n", i, i, suffix, i)
			files[fmt.Sprintf("svc%02d.env%s", i, suffix)] = content(fmt.Sprintf(
				"APP_TOKEN=token-%02d-9d8e7f6a5b4c\nDB_URL=postgres://app:pw-%02d@db:5432/app\nLOG_LEVEL=info\n", i, i))
			files[fmt.Sprintf("s%02d.secret%s", i, suffix)] = content(fmt.Sprintf("secret-%02d-c0ffee-0123456789abcdef\n", i))
		}
		y.WriteString("secrets:\n")
		for i := 0; i < services; i++ {
			fmt.Fprintf(&y, "  s%02d:\n    file: ./s%02d.secret%s\n", i, i, suffix)
		}
		files["compose.yaml"] = y.String()
		for p, c := range files {
			if err := os.MkdirAll(root, 0o755); err != nil {
				b.Fatal(err)
			}
			writeFile(b, filepath.Join(root, p), c)
		}
		return compose.LoadOptions{
			ReleaseDir:   root,
			Project:      "lsbench",
			Environment:  "bench",
			Commit:       strings.Repeat("ab", 20),
			RepoEnvFiles: []string{"pin.env" + suffix},
			Version:      "bench",
			Secrets:      compose.SecretOptions{IdentityFile: idFile, RuntimeDir: filepath.Join(shm, name)},
		}
	}
	encrypted := release("encrypted", ".age", encrypt)
	plain := release("plain", "", func(s string) string { return s })

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	load := func(opts compose.LoadOptions, wantSecretFiles int) {
		p, err := compose.Load(ctx, opts)
		if err != nil {
			b.Fatalf("Load %s: %v", opts.ReleaseDir, err)
		}
		if len(p.Services) != services || len(p.SecretFiles) != wantSecretFiles {
			b.Fatalf("Load %s: %d services and %d secret files, want %d and %d", opts.ReleaseDir, len(p.Services), len(p.SecretFiles), services, wantSecretFiles)
		}
		env := strings.Join(p.Services[services-1].Config.Env, "\n")
		for _, want := range []string{fmt.Sprintf("APP_TOKEN=token-%02d-9d8e7f6a5b4c", services-1), "REGION=eu-west-1"} {
			if !strings.Contains(env, want) {
				b.Fatalf("Load %s: svc%02d's environment lacks %s", opts.ReleaseDir, services-1, want)
			}
		}
	}
	load(encrypted, services)
	load(plain, 0)

	var dec, pl time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		dec += timed(func() { load(encrypted, services) })
		b.StopTimer()
		pl += timed(func() { load(plain, 0) })
		b.StartTimer()
	}
	n := float64(b.N)
	b.ReportMetric(dec.Seconds()*1e3/n, "decrypt-ms/load")
	b.ReportMetric(pl.Seconds()*1e3/n, "plain-ms/load")
	b.ReportMetric(dec.Seconds()/pl.Seconds(), "decrypt/plain")
}
