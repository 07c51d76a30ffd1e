package compose

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"
)

// TestStackEncryptedSecret: an age-encrypted secret of the release is
// decrypted in memory into the object's data, and its plaintext is in no
// name, label, hash, error or JSON of the project.
func TestStackEncryptedSecret(t *testing.T) {
	const plain = "s3cr3t-db-password-7f1c"
	id := newTestIdentity(t)
	files := map[string]string{
		"compose.yaml": `services:
  db:
    image: postgres:16
    secrets: [db_password]
secrets:
  db_password: {file: ./db_password.age}
`,
		"db_password.age": encrypt(t, id, plain, true),
	}
	dir := writeRelease(t, files)
	opts := testOptions(dir)
	opts.Swarm = true
	opts.Secrets = SecretOptions{IdentityFile: id.file}
	p := load(t, opts)
	o := p.Stack.Secrets[0]
	eq(t, "data", string(o.Data()), plain)
	eq(t, "encrypted", o.Encrypted, true)
	eq(t, "source", o.Source, "db_password.age")
	sum := sha256.Sum256([]byte(plain))
	if o.ContentHash == hex.EncodeToString(sum[:]) {
		t.Error("the content hash of an encrypted secret is its plain sha256, which a guess of the value can be checked against")
	}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), plain) {
		t.Errorf("the project's JSON holds the plaintext:\n%s", b)
	}

	// Re-encrypted, the same plaintext keeps the object and the hash.
	files["db_password.age"] = encrypt(t, id, plain, false)
	opts2 := opts
	opts2.ReleaseDir = writeRelease(t, files)
	p2 := load(t, opts2)
	eq(t, "object after re-encryption", p2.Stack.Secrets[0].Name, o.Name)
	eq(t, "hash after re-encryption", p2.Stack.Services[0].Hash, p.Stack.Services[0].Hash)

	// Without the identity: refused, naming the file, without plaintext.
	opts3 := opts
	opts3.Secrets = SecretOptions{}
	le := loadErr(t, opts3)
	assertContains(t, le.Error(), "db_password.age", "age identity")
	if strings.Contains(le.Error(), plain) {
		t.Errorf("error holds the plaintext: %v", le)
	}
}

// TestStackNeed: a partial release is asked for the config files the
// stack reads.
func TestStackNeed(t *testing.T) {
	dir := writeRelease(t, hashRelease(nil))
	opts := testOptions(dir)
	opts.Swarm = true
	var asked []string
	opts.Need = func(path string) error {
		asked = append(asked, path)
		return nil
	}
	load(t, opts)
	for _, want := range []string{"site.conf", "jobs.conf"} {
		found := false
		for _, a := range asked {
			found = found || a == want
		}
		if !found {
			t.Errorf("Need was not asked for %s (asked %v)", want, asked)
		}
	}
}

// TestStackLabelFromEncryptedRefused: a service label of the swarm
// service (deploy.labels) or an object's label cannot carry a decrypted
// value.
func TestStackLabelFromEncryptedRefused(t *testing.T) {
	id := newTestIdentity(t)
	for _, tc := range []struct{ compose, key string }{
		{"services:\n  web:\n    image: nginx:1.27\n    deploy:\n      labels: {token: \"${TOKEN}\"}\n", "deploy.labels"},
		{"services:\n  web:\n    image: nginx:1.27\n    configs: [c]\nconfigs:\n  c: {content: x, labels: {t: \"${TOKEN}\"}}\n", "configs.c.labels"},
	} {
		dir := writeRelease(t, map[string]string{"compose.yaml": tc.compose, ".env.age": encrypt(t, id, "TOKEN=tok-5e3a9\n", false)})
		opts := testOptions(dir)
		opts.Swarm = true
		opts.Secrets = SecretOptions{IdentityFile: id.file}
		le := loadErr(t, opts)
		if le.Key != tc.key || le.Line == 0 {
			t.Errorf("error at line %d key %q, want %s: %v", le.Line, le.Key, tc.key, le)
		}
		assertContains(t, le.Error(), "TOKEN", ".env.age")
		if strings.Contains(le.Error(), "tok-5e3a9") {
			t.Errorf("error holds the plaintext: %v", le)
		}
	}
}

// TestStackEncryptedConfigRefused: a swarm config is readable by anyone
// with access to a manager, so decrypted content must be a secret.
func TestStackEncryptedConfigRefused(t *testing.T) {
	id := newTestIdentity(t)
	for _, tc := range []struct{ name, top string }{
		{"age file", "configs:\n  c: {file: ./c.conf.age}\n"},
		{"decrypted variable", "configs:\n  c: {content: \"password=${TOKEN}\"}\n"},
		{"decrypted environment", "configs:\n  c: {environment: TOKEN}\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeRelease(t, map[string]string{
				"compose.yaml": "services:\n  web:\n    image: nginx:1.27\n    configs: [c]\n" + tc.top,
				"c.conf.age":   encrypt(t, id, "password=tok-5e3a9", false),
				".env.age":     encrypt(t, id, "TOKEN=tok-5e3a9\n", false),
			})
			opts := testOptions(dir)
			opts.Swarm = true
			opts.Secrets = SecretOptions{IdentityFile: id.file}
			le := loadErr(t, opts)
			assertContains(t, le.Error(), "configs.c", "secrets: instead")
			if strings.Contains(le.Error(), "tok-5e3a9") {
				t.Errorf("error holds the plaintext: %v", le)
			}
		})
	}
}
