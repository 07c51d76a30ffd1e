package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"filippo.io/age"
	"filippo.io/age/armor"

	"github.com/lockstep-gitops/lockstep/e2e/harness"
)

// tmpfsDir makes a directory on a tmpfs for [secrets].runtime_dir: /dev/shm
// on this kind of host. Without one the test cannot run (fails under CI).
func tmpfsDir(t *testing.T) string {
	t.Helper()
	var st syscall.Statfs_t
	const tmpfsMagic = 0x01021994
	if err := syscall.Statfs("/dev/shm", &st); err != nil || st.Type != tmpfsMagic {
		if os.Getenv("CI") == "true" {
			t.Fatalf("/dev/shm is not a tmpfs here (%v): the secrets test needs one", err)
		}
		t.Skip("SKIPPING: /dev/shm is not a tmpfs; decrypted secrets cannot be materialized")
	}
	dir, err := os.MkdirTemp("/dev/shm", "lse2e-run-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// encrypt returns plaintext encrypted to r, armored or binary.
func encrypt(t *testing.T, r age.Recipient, plaintext string, armored bool) string {
	t.Helper()
	var buf bytes.Buffer
	var out io.Writer = &buf
	var a io.WriteCloser
	if armored {
		a = armor.NewWriter(&buf)
		out = a
	}
	w, err := age.Encrypt(out, r)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(w, plaintext); err != nil {
		t.Fatal(err)
	}
	must(t, w.Close())
	if a != nil {
		must(t, a.Close())
	}
	return buf.String()
}

// scanFor fails the test if any file under root (except the paths skip
// allows) holds one of the secrets in clear.
func scanFor(t *testing.T, root string, secrets []string, skip func(path string) bool) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if skip != nil && skip(p) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		n++
		for _, s := range secrets {
			if bytes.Contains(b, []byte(s)) {
				t.Errorf("%s holds a secret in clear (%d bytes of %q...)", p, len(s), s[:4])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("scanning %s: %v", root, err)
	}
	return n
}

func noSecrets(t *testing.T, what, text string, secrets []string) {
	t.Helper()
	for _, s := range secrets {
		if strings.Contains(text, s) {
			t.Errorf("%s shows a secret in clear (%q...):\n%s", what, s[:4], text)
		}
	}
}

// TestEncryptedSecrets deploys a release whose secrets are age-encrypted
// in the repository: a dotenv file named by the pin's env_files (used for
// interpolation), an encrypted env_file, and an encrypted file used as a
// compose secret. The container sees the values; the secret file is
// materialized only under the tmpfs runtime dir (0444 in a 0700 dir); no
// file of the state dir (git cache, releases, records, history) and none
// of plan, apply, validate, status or history output holds a value in
// clear. Re-encrypting the same values changes nothing; changing one
// recreates the service, with a hash (not the value) in the plan.
func TestEncryptedSecrets(t *testing.T) {
	runtimeDir := tmpfsDir(t)
	f := newFixture(t)
	cli := harness.RequireDocker(t)

	id, err := age.GenerateX25519Identity()
	must(t, err)
	etc := t.TempDir()
	identityFile := filepath.Join(etc, "age-identity.txt")
	must(t, os.WriteFile(identityFile, []byte("# lockstep e2e\n"+id.String()+"\n"), 0o400))
	f.agentExtra = fmt.Sprintf("\n[secrets]\nage_identity = %q\nruntime_dir = %q\n", identityFile, runtimeDir)
	f.writeConfig("")

	stamp := fmt.Sprint(time.Now().UnixNano())
	password := "pw-" + stamp + "-interp"
	token := "tok-" + stamp + "-envfile"
	config1 := "cfg-" + stamp + "-secret-one"
	config2 := "cfg-" + stamp + "-secret-two"
	secrets := []string{password, token, config1, config2}

	s := stack{WebImage: f.images["web:a"], DBImage: f.images["db:a"], Extra: `    environment:
      DB_URL: "postgres://app:${DB_PASSWORD}@db/app"
      CONFIG_FILE: /run/secrets/webcfg
    env_file: [secrets/web.env.age]
    secrets: [webcfg]
`}
	composeYAML := s.yaml() + "secrets:\n  webcfg:\n    file: ./secrets/webcfg.age\n"
	release := func(msg, cfgValue string) string {
		sha := f.git.Commit(t, msg, map[string]string{
			"compose.yaml":        composeYAML,
			"secrets/e2e.env.age": encrypt(t, id.Recipient(), "DB_PASSWORD="+password+"\n", true),
			"secrets/web.env.age": encrypt(t, id.Recipient(), "API_TOKEN="+token+"\n", false),
			"secrets/webcfg.age":  encrypt(t, id.Recipient(), cfgValue, false),
		})
		f.git.Commit(t, "pin e2e to "+sha[:12], map[string]string{
			"environments/e2e.toml": fmt.Sprintf("commit = %q\nenv_files = [\"secrets/e2e.env.age\"]\n", sha),
		})
		return sha
	}

	var outputs strings.Builder
	record := func(what string, r result) {
		fmt.Fprintf(&outputs, "--- %s\n%s\n%s\n", what, r.stdout, r.stderr)
	}

	sha1 := release("encrypted secrets", config1)
	r := f.lockstep("validate", "e2e")
	record("validate", r)
	if r.code != 0 {
		t.Fatalf("validate: %s", r)
	}
	record("plan", f.lockstep("plan", "--json", "e2e"))
	record("apply", f.apply())

	w := world(t, cli, f.project)
	web := w["web"]
	env := strings.Join(web.inspect.Config.Env, "\n")
	for _, want := range []string{"DB_URL=postgres://app:" + password + "@db/app", "API_TOKEN=" + token} {
		if !strings.Contains(env, want) {
			t.Errorf("web's environment lacks %q:\n%s", want, env)
		}
	}
	url := "http://127.0.0.1:" + hostPort(t, web, "8080") + "/config"
	if got := httpGet(t, url); got != config1 {
		t.Errorf("web reads %q from its secret, want %q", got, config1)
	}
	src := mountSource(t, web, "/run/secrets/webcfg")
	if !strings.HasPrefix(src, runtimeDir+"/") {
		t.Errorf("the secret is bound from %s, not from under the runtime dir %s", src, runtimeDir)
	}
	if fi, err := os.Stat(src); err != nil || fi.Mode().Perm() != 0o444 {
		t.Errorf("materialized secret %s: %v, mode %v, want 0444", src, err, fi.Mode())
	}
	if fi, err := os.Stat(filepath.Dir(src)); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("directory of the materialized secret: %v, mode %v, want 0700", err, fi.Mode())
	}

	// Re-encrypting the same values (new ciphertext) changes nothing.
	release("re-encrypted, same values", config1)
	if p := f.plan(); !p.Empty() {
		t.Errorf("re-encrypting unchanged secrets plans changes: %+v", p.Actions)
	}

	// A new value recreates web; the plan names the file and shows a hash.
	sha2 := release("rotate webcfg", config2)
	pr := f.lockstep("plan", "e2e")
	record("plan after rotation", pr)
	if !strings.Contains(pr.stdout, "file secrets/webcfg.age changed (value ") {
		t.Errorf("the plan does not say the secret file changed, with its keyed digest: %s", pr)
	}
	record("apply after rotation", f.apply())
	after := world(t, cli, f.project)
	if got := httpGet(t, "http://127.0.0.1:"+hostPort(t, after["web"], "8080")+"/config"); got != config2 {
		t.Errorf("after rotation web reads %q, want %q", got, config2)
	}
	if _, err := os.Stat(src); !os.IsNotExist(err) {
		t.Errorf("the rotated-out secret %s is still on the tmpfs: %v", src, err)
	}

	// The agent's records: status and history through the API.
	a := f.startAgent()
	f.converged(sha2, time.Minute)
	st, _ := json.Marshal(f.status())
	hist, _ := json.Marshal(f.history())
	a.signal(syscall.SIGTERM)
	a.wait(time.Minute)
	noSecrets(t, "status", string(st), secrets)
	noSecrets(t, "history", string(hist), secrets)
	noSecrets(t, "the agent's log", a.log(), secrets)
	noSecrets(t, "CLI output", outputs.String(), secrets)

	n := scanFor(t, f.stateDir, secrets, nil)
	m := scanFor(t, runtimeDir, secrets, func(p string) bool { return strings.HasPrefix(p, filepath.Join(runtimeDir, "secrets")) })
	t.Logf("scanned %d files of the state dir and %d of the runtime dir (outside secrets/): no secret in clear; releases %s, %s", n, m, sha1[:12], sha2[:12])
}
