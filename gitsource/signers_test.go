package gitsource

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/lockstep-gitops/lockstep/e2e/harness"
)

func authorizedKey(s ssh.Signer) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(s.PublicKey())))
}

func TestParseAllowedSigners(t *testing.T) {
	alice, bob := fixedSSHSigner(t, 1), fixedSSHSigner(t, 2)
	file := strings.Join([]string{
		"# comment",
		"",
		"   alice@example.com " + authorizedKey(alice) + " alice's laptop",
		`"Bob Builder <bob@example.com>,ops@*" NAMESPACES="git,file",valid-after="20240101",valid-before="202501021530Z" ` + authorizedKey(bob) + "\r",
		"\tbob@example.com namespaces=\"fi\\\"le\" " + authorizedKey(bob),
	}, "\n")
	a, err := parseAllowedSigners("signers", []byte(file))
	if err != nil {
		t.Fatal(err)
	}
	if len(a.entries) != 3 {
		t.Fatalf("%d entries, want 3", len(a.entries))
	}
	e := a.entries[1]
	wantAfter := time.Date(2024, 1, 1, 0, 0, 0, 0, time.Local)
	wantBefore := time.Date(2025, 1, 2, 15, 30, 0, 0, time.UTC)
	if e.line != 4 || e.principals != "Bob Builder <bob@example.com>,ops@*" ||
		strings.Join(e.namespaces, "|") != "git|file" || !e.validAfter.Equal(wantAfter) || !e.validBefore.Equal(wantBefore) {
		t.Errorf("line 4 = %+v", e)
	}
	if got := a.entries[2].namespaces; len(got) != 1 || got[0] != `fi"le` {
		t.Errorf("escaped quote in namespaces: %q", got)
	}
	if got := a.lookup(bob.PublicKey()); len(got) != 2 || got[0].line != 4 || got[1].line != 5 {
		t.Errorf("lookup(bob) = %+v, want lines 4 and 5", got)
	}
	if got := a.lookup(fixedSSHSigner(t, 3).PublicKey()); len(got) != 0 {
		t.Errorf("lookup of an unlisted key = %+v", got)
	}
	if got := a.entries[0]; got.principals != "alice@example.com" || got.namespaces != nil || !got.validAfter.IsZero() {
		t.Errorf("line 3 = %+v", got)
	}
}

func TestParseAllowedSignersRefusals(t *testing.T) {
	k := authorizedKey(fixedSSHSigner(t, 1))
	rsaLine := func(bits int) string {
		out := "x@example.com ssh-rsa "
		// A real RSA public key of the given size, built from a fixed modulus.
		n := make([]byte, 1+bits/8) // an mpint: a leading zero keeps it positive
		n[1] = 0xc1
		n[len(n)-1] = 1
		blob := appendSSHString(nil, []byte("ssh-rsa"))
		blob = appendSSHString(blob, []byte{1, 0, 1})
		blob = appendSSHString(blob, n)
		return out + base64.StdEncoding.EncodeToString(blob)
	}
	tests := []struct{ line, want string }{
		{"alice@example.com", "expected [options] keytype base64-key"},
		{`"alice@example.com ` + k, "unterminated double quote"},
		{`"alice"x ` + k, "text right after the closing quote"},
		{",alice " + k, "empty entry"},
		{`"" ` + k, "empty principals"},
		{"a@x cert-authority " + k, "cert-authority: SSH certificates are not supported"},
		{"a@x CERT-AUTHORITY,namespaces=\"git\" " + k, "cert-authority"},
		{"a@x no-touch-required " + k, `unknown option "no-touch-required"`},
		{"a@x namespaces=git " + k, "must be in double quotes"},
		{"a@x namespaces " + k, "needs a quoted value"},
		{`a@x namespaces="" ` + k, "namespaces is empty"},
		{`a@x namespaces="git",namespaces="file" ` + k, "given twice"},
		{`a@x valid-after="2024" ` + k, "not YYYYMMDD"},
		{`a@x valid-after="20241301" ` + k, "month out of range"},
		{`a@x valid-after="20240102",valid-before="20240101" ` + k, "valid-before is not after valid-after"},
		{`a@x valid-before="20240101Z ` + k, "unterminated double quote"},
		{"a@x ssh-ed25519", "base64 key is missing"},
		{"a@x ssh-ed25519 !!!!", "not valid base64"},
		{"a@x ssh-ed25519 AAAA", "ssh-ed25519 key"},
		{"a@x ssh-rsa " + strings.Fields(k)[1], "the key is of type ssh-ed25519, but the line says ssh-rsa"},
		{"a@x ssh-dss AAAAB3NzaC1kc3M=", "DSA"},
		{rsaLine(1024), "RSA key of 1024 bits is too weak"},
		{rsaLine(16392), "modulus too large"},
		{"a@x ssh-foo AAAA", "expected [options] keytype base64-key"},
	}
	for _, tt := range tests {
		data := "# header\n" + tt.line + "\n"
		_, err := parseAllowedSigners("/etc/lockstep/allowed_signers", []byte(data))
		if err == nil {
			t.Errorf("%q: accepted", tt.line)
			continue
		}
		for _, want := range []string{"/etc/lockstep/allowed_signers", "line 2: ", tt.want} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%q: err = %v, want it to contain %q", tt.line, err, want)
			}
		}
	}
	if _, err := parseAllowedSigners("f", []byte(rsaLine(2048))); err != nil {
		t.Errorf("2048-bit RSA key: %v", err)
	}
	if _, err := parseAllowedSigners("f", []byte(strings.Repeat("#", maxSignersFileBytes+1))); err == nil {
		t.Error("an oversize file is accepted")
	}
}

func TestMatchPattern(t *testing.T) {
	tests := []struct {
		s, p string
		want bool
	}{
		{"git", "git", true},
		{"git", "g*", true},
		{"git", "*t", true},
		{"git", "g?t", true},
		{"git", "*", true},
		{"", "*", true},
		{"git", "gi", false},
		{"git", "g?", false},
		{"git", "file", false},
		{"a@example.com", "*@example.com", true},
		{"a@example.org", "*@example.com", false},
		{"aaaaaaaaaaaaaaaaaaaaaaaaaaaaab", "*a*a*a*a*a*a*a*a*a*a*a*a*c", false},
	}
	for _, tt := range tests {
		if got := matchPattern(tt.s, tt.p); got != tt.want {
			t.Errorf("matchPattern(%q, %q) = %v", tt.s, tt.p, got)
		}
	}
	if matchPatternList("git", []string{"*", "!git"}) || !matchPatternList("git", []string{"file", "g*"}) || matchPatternList("git", []string{"!file"}) {
		t.Error("pattern lists: a negation must refuse, and only a positive match accepts")
	}
}

// lockstep and ssh-keygen -Y verify agree on which allowed_signers lines
// accept a git signature made at a given time.
func TestAllowedSignersAgreeWithSSHKeygen(t *testing.T) {
	keygen := harness.RequireTool(t, "ssh-keygen", "openssh-client")
	dir := t.TempDir()
	signer := fixedSSHSigner(t, 9)
	msg := []byte("tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n\nhello\n")
	sigFile := filepath.Join(dir, "msg.sig")
	if err := os.WriteFile(sigFile, armorSSHSig(signFields(t, signer, "git", "sha512", "", msg).blob()), 0o644); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2024, 6, 1, 12, 0, 0, 0, time.UTC)
	verdicts := map[bool]int{}
	for _, opts := range []string{
		"",
		`namespaces="git"`,
		`namespaces="file"`,
		`namespaces="file,g*"`,
		`namespaces="*,!git"`,
		`valid-after="20240601Z"`,
		`valid-after="20240602Z"`,
		`valid-before="20240601Z"`,
		`valid-before="202406011200Z"`,
		`valid-before="20240601115959Z"`,
		`valid-after="20240101Z",valid-before="20250101Z"`,
	} {
		line := "me@example.com " + opts + " " + authorizedKey(signer)
		file := filepath.Join(dir, "allowed")
		if err := os.WriteFile(file, []byte(line+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := runIn(t, dir, msg, keygen, "-Y", "verify", "-f", file, "-I", "me@example.com", "-n", "git", "-s", sigFile,
			"-Overify-time="+at.Format("20060102150405")+"Z")
		theirs := err == nil
		verdicts[theirs]++

		a, perr := parseAllowedSigners(file, []byte(line))
		if perr != nil {
			t.Errorf("%s: %v", line, perr)
			continue
		}
		s, _ := parseArmoredSSHSig(armorSSHSig(signFields(t, signer, "git", "sha512", "", msg).blob()))
		ours := s.verify(msg) == nil && a.lookup(s.pub)[0].permits(gitNamespace, at) == ""
		if ours != theirs {
			t.Errorf("options %s: lockstep accepts = %v, ssh-keygen accepts = %v (%s)", opts, ours, theirs, strings.TrimSpace(out))
		}
	}
	if verdicts[true] < 4 || verdicts[false] < 4 {
		t.Errorf("ssh-keygen accepted %d and refused %d lines: the comparison does not exercise both sides", verdicts[true], verdicts[false])
	}
}
