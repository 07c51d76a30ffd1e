package config

import (
	"fmt"
	"net/url"
	"path"
	"path/filepath"
	"regexp"
	"strings"
)

// transport is how a repository URL is reached; it decides which
// credentials make sense.
type transport int

const (
	transportInvalid transport = iota
	transportHTTP              // https:// or http://
	transportSSH               // ssh:// or scp-like user@host:path
	transportLocal             // file:// or an absolute path
)

func (t transport) String() string {
	switch t {
	case transportHTTP:
		return "an http(s) URL"
	case transportSSH:
		return "an ssh URL"
	case transportLocal:
		return "a local repository"
	}
	return "an invalid URL"
}

// scpLikeRE matches git's scp-like syntax, [user@]host:path, which git only
// recognises when no slash comes before the colon.
var scpLikeRE = regexp.MustCompile(`^(?:[^@/:]+@)?([^@/:]+):(.+)$`)

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

	t := transportInvalid
	if r.URL == "" {
		c.add(k("url"), "required: the git repository to watch (https://, ssh://, user@host:path, file:// or an absolute path)")
	} else {
		var msg string
		t, msg = classifyURL(r.URL)
		if msg != "" {
			c.add(k("url"), "%s", msg)
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
	if t != transportInvalid {
		if r.TokenFile != "" && t != transportHTTP {
			c.add(k("token_file"), "only used with https:// or http:// URLs, but [repo].url is %s", t)
		}
		if r.SSHKey != "" && t != transportSSH {
			c.add(k("ssh_key"), "only used with ssh URLs, but [repo].url is %s", t)
		}
		if r.KnownHosts != "" && t != transportSSH {
			c.add(k("known_hosts"), "only used with ssh URLs, but [repo].url is %s", t)
		}
		if t == transportSSH && r.KnownHosts == "" {
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

// classifyURL says how u is reached, or why it is not accepted. Messages
// show the URL through safeURL only: a token pasted into it must not reach
// a log.
func classifyURL(u string) (transport, string) {
	// "//host/x" reads as a URL without a scheme ("//me:token@host/x"
	// looks like credentials) but would be taken as a local path: say
	// which is meant. Found by FuzzParse.
	if strings.HasPrefix(u, "//") {
		// Not shown: without a scheme, safeURL cannot tell a password.
		return transportInvalid, "starts with //: a path on this host starts with a single /, and a URL needs its scheme (https://, ssh://, file://)"
	}
	if strings.HasPrefix(u, "/") {
		return transportLocal, ""
	}
	shown := safeURL(u)
	if !strings.Contains(u, "://") {
		if scpLikeRE.MatchString(u) {
			return transportSSH, ""
		}
		return transportInvalid, fmt.Sprintf("%q is not a repository URL: use https://, http://, ssh://, user@host:path, file:// or an absolute path", shown)
	}
	parsed, err := url.Parse(u)
	if err != nil {
		return transportInvalid, fmt.Sprintf("%q is not a valid URL", shown)
	}
	if _, hasPassword := parsed.User.Password(); hasPassword {
		return transportInvalid, fmt.Sprintf("%q holds a password: credentials never go in the config text; put the token in a file and set token_file", shown)
	}
	switch parsed.Scheme {
	case "https", "http", "ssh":
		if parsed.Host == "" {
			return transportInvalid, fmt.Sprintf("%q has no host", shown)
		}
		if parsed.Scheme == "ssh" {
			return transportSSH, ""
		}
		return transportHTTP, ""
	case "file":
		if parsed.Host != "" && parsed.Host != "localhost" {
			return transportInvalid, fmt.Sprintf("%q: a file:// URL must name a local path (file:///srv/repo)", shown)
		}
		if !path.IsAbs(parsed.Path) {
			return transportInvalid, fmt.Sprintf("%q: a file:// URL must name an absolute path (file:///srv/repo)", shown)
		}
		return transportLocal, ""
	}
	return transportInvalid, fmt.Sprintf("scheme %q is not supported: use https://, http://, ssh://, user@host:path, file:// or an absolute path", parsed.Scheme)
}

// safeURL is u with anything that may be a credential replaced: the user
// info of a URL (a token is often pasted as the user name), except the
// plain user name of ssh, which is an account such as "git".
func safeURL(u string) string {
	start := 0
	if i := strings.Index(u, "://"); i >= 0 {
		start = i + 3
	}
	rest := u[start:]
	if slash := strings.IndexByte(rest, '/'); slash >= 0 {
		rest = rest[:slash]
	}
	at := strings.LastIndexByte(rest, '@')
	if at < 0 {
		return u
	}
	user := rest[:at]
	isSSH := strings.HasPrefix(u, "ssh://") || start == 0
	if isSSH && !strings.Contains(user, ":") {
		return u
	}
	return u[:start] + "REDACTED" + u[start+at:]
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
