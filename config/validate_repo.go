package config

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/lockstep-gitops/lockstep/gitsource"
)

func (c *checker) repo(f *fileRepo) Repo {
	k := func(name string) key { return tableKey("repo", name) }
	r := Repo{
		URL:                  c.str(k("url"), f.URL, ""),
		Branch:               c.str(k("branch"), f.Branch, DefaultBranch),
		PollInterval:         c.duration(k("poll_interval"), f.PollInterval, DefaultPollInterval, MinPollInterval),
		Timeout:              c.duration(k("timeout"), f.Timeout, DefaultTimeout, MinTimeout),
		TokenFile:            c.str(k("token_file"), f.TokenFile, ""),
		SSHKey:               c.str(k("ssh_key"), f.SSHKey, ""),
		SSHKeyPassphraseFile: c.str(k("ssh_key_passphrase_file"), f.SSHKeyPassphraseFile, ""),
		KnownHosts:           c.str(k("known_hosts"), f.KnownHosts, ""),
	}

	t := gitsource.TransportInvalid
	if r.URL == "" {
		c.add(k("url"), "required: the git repository to watch (https://, ssh://, user@host:path, file:// or an absolute path)")
	} else {
		var err error
		if t, err = gitsource.ParseURL(r.URL); err != nil {
			c.add(k("url"), "%s", err)
		}
	}

	if msg := checkBranch(r.Branch); msg != "" {
		c.add(k("branch"), "%s", msg)
	}

	// Credential files are read by the daemon, whose working directory is
	// not the operator's: a relative path would silently mean something
	// else under systemd.
	for _, f := range []struct {
		name, value string
	}{
		{"token_file", r.TokenFile},
		{"ssh_key", r.SSHKey},
		{"ssh_key_passphrase_file", r.SSHKeyPassphraseFile},
		{"known_hosts", r.KnownHosts},
	} {
		if f.value != "" && !filepath.IsAbs(f.value) {
			c.add(k(f.name), "must be an absolute path, got %q", f.value)
		}
	}

	// Credentials that the URL's transport would not use are most likely a
	// mistake about which URL is configured; say so rather than ignore them.
	if t != gitsource.TransportInvalid {
		if r.TokenFile != "" && t != gitsource.TransportHTTP {
			c.add(k("token_file"), "only used with https:// or http:// URLs, but [repo].url is %s", t)
		}
		if r.SSHKey != "" && t != gitsource.TransportSSH {
			c.add(k("ssh_key"), "only used with ssh URLs, but [repo].url is %s", t)
		}
		if r.KnownHosts != "" && t != gitsource.TransportSSH {
			c.add(k("known_hosts"), "only used with ssh URLs, but [repo].url is %s", t)
		}
		if t == gitsource.TransportSSH && r.KnownHosts == "" {
			c.add(k("known_hosts"), "required for ssh URLs: host keys are verified, never trusted on first use; "+
				"point it at a known_hosts file holding the git host's key (ssh-keyscan HOST > FILE, then check the fingerprint)")
		}
	}
	if r.SSHKeyPassphraseFile != "" && r.SSHKey == "" {
		c.add(k("ssh_key_passphrase_file"), "set without ssh_key: the passphrase decrypts the key named by ssh_key")
	}
	r.Verify = c.verify(&f.Verify)
	return r
}

func (c *checker) verify(f *fileVerify) Verify {
	k := func(name string) key { return tableKey("repo.verify", name) }
	v := Verify{
		Commits:           c.str(k("commits"), f.Commits, ""),
		OpenPGPKeyring:    c.str(k("openpgp_keyring"), f.OpenPGPKeyring, ""),
		SSHAllowedSigners: c.str(k("ssh_allowed_signers"), f.SSHAllowedSigners, ""),
	}
	for _, p := range []struct{ name, value string }{
		{"openpgp_keyring", v.OpenPGPKeyring},
		{"ssh_allowed_signers", v.SSHAllowedSigners},
	} {
		if p.value != "" && !filepath.IsAbs(p.value) {
			c.add(k(p.name), "must be an absolute path, got %q", p.value)
		}
	}
	switch v.Commits {
	case "":
		if v.Enabled() {
			v.Commits = VerifyBoth
		}
	case VerifyHead, VerifyPinned, VerifyBoth:
		if !v.Enabled() {
			c.add(k("commits"), "set without trusted keys: name openpgp_keyring and/or ssh_allowed_signers, or remove [repo.verify]")
		}
	default:
		c.add(k("commits"), "must be \"head\" (the branch head holding the pin), \"pinned\" (the deployed commit) or \"both\", got %q", v.Commits)
	}
	return v
}

// checkBranch applies the parts of git's ref name rules that a typo can
// break; the remote has the last word on whether the branch exists.
func checkBranch(b string) string {
	switch {
	case b == "":
		return "must not be empty (default " + DefaultBranch + ")"
	case strings.HasPrefix(b, "refs/"):
		return fmt.Sprintf("%q: give the branch name without refs/heads/", b)
	case strings.HasPrefix(b, "-"), strings.HasPrefix(b, "/"), strings.HasSuffix(b, "/"),
		strings.HasSuffix(b, ".lock"), strings.HasSuffix(b, "."),
		strings.Contains(b, ".."), strings.Contains(b, "//"), strings.Contains(b, "@{"),
		strings.ContainsAny(b, " \t~^:?*[\\"):
		return fmt.Sprintf("%q is not a valid git branch name", b)
	}
	return ""
}
