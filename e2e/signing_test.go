package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lockstep-gitops/lockstep/e2e/harness"
)

// signer is a signing key made in the test with the real tools, and how
// real git signs with it.
type signer struct {
	name    string
	config  []string // git -c settings
	env     []string // extra environment (GNUPGHOME)
	trusted string   // the line or armored block lockstep is given to trust it
	id      string   // how lockstep names it: the SSH fingerprint or the OpenPGP fingerprint
}

func tool(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// sshSigner makes an ed25519 key with ssh-keygen; git signs with
// gpg.format=ssh.
func sshSigner(t *testing.T, name string) signer {
	t.Helper()
	harness.RequireTool(t, "ssh-keygen", "openssh-client")
	key := filepath.Join(t.TempDir(), "id_"+name)
	tool(t, nil, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name+"@lockstep.invalid", "-f", key)
	pub := strings.TrimSpace(readFile(t, key+".pub"))
	fp := strings.Fields(tool(t, nil, "ssh-keygen", "-l", "-E", "sha256", "-f", key+".pub"))[1]
	fields := strings.Fields(pub)
	return signer{
		name:    name,
		config:  []string{"gpg.format=ssh", "user.signingkey=" + key},
		trusted: name + `@lockstep.invalid namespaces="git" ` + fields[0] + " " + fields[1],
		id:      fp,
	}
}

// pgpSigner makes an OpenPGP key with gpg in a GNUPGHOME of its own (a
// short path: gpg-agent's socket path is limited).
func pgpSigner(t *testing.T, name string) signer {
	t.Helper()
	harness.RequireTool(t, "gpg", "gnupg")
	home, err := os.MkdirTemp("", "gpg")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(home, 0o700); err != nil {
		t.Fatal(err)
	}
	env := []string{"GNUPGHOME=" + home}
	t.Cleanup(func() {
		exec.Command("gpgconf", "--homedir", home, "--kill", "gpg-agent").Run()
		os.RemoveAll(home)
	})
	uid := name + " <" + name + "@lockstep.invalid>"
	tool(t, env, "gpg", "--batch", "--quiet", "--passphrase", "", "--quick-gen-key", uid, "ed25519", "sign", "never")
	var fpr string
	for _, line := range strings.Split(tool(t, env, "gpg", "--batch", "--with-colons", "--fingerprint", uid), "\n") {
		if f := strings.Split(line, ":"); len(f) > 9 && f[0] == "fpr" {
			fpr = f[9]
			break
		}
	}
	if fpr == "" {
		t.Fatal("gpg printed no fingerprint")
	}
	return signer{
		name:    name,
		config:  []string{"gpg.format=openpgp", "user.signingkey=" + fpr},
		env:     env,
		trusted: tool(t, env, "gpg", "--batch", "--armor", "--export", fpr),
		id:      fpr,
	}
}
