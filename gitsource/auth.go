package gitsource

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// Auth says how to authenticate to the remote. Secrets are only ever read
// from files, never taken from configuration text.
type Auth struct {
	// TokenFile holds an HTTPS token (surrounding whitespace is trimmed). It
	// is sent as basic auth with the user of the URL, or "x-access-token".
	// The file is read on every network operation, so a rotated token is
	// picked up without a restart.
	TokenFile string
	// SSHKey is the path of a private key for ssh:// and scp-like URLs.
	SSHKey               string
	SSHKeyPassphraseFile string
	// KnownHosts is the path of a known_hosts file. Required for SSH: host
	// keys are always verified, never trusted on first use or ignored.
	KnownHosts string
}

// defaultTokenUser is the user name GitHub and others accept with a token.
const defaultTokenUser = "x-access-token"

// credentials produces the auth method for one network operation and the
// secrets that must be scrubbed from whatever that operation returns.
type credentials interface {
	method() (transport.AuthMethod, []string, error)
}

// noCredentials is for public remotes and local paths.
type noCredentials struct{}

func (noCredentials) method() (transport.AuthMethod, []string, error) { return nil, nil, nil }

// tokenCredentials reads the token file on each use.
type tokenCredentials struct {
	user string
	file string
}

func (c tokenCredentials) method() (transport.AuthMethod, []string, error) {
	token, err := readToken(c.file)
	if err != nil {
		return nil, nil, err
	}
	return &githttp.BasicAuth{Username: c.user, Password: token}, []string{token}, nil
}

func readToken(file string) (string, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("read token file %s: %w", file, err)
	}
	token := strings.TrimSpace(string(data))
	if token == "" {
		return "", fmt.Errorf("token file %s is empty; put the access token in it", file)
	}
	if strings.ContainsAny(token, "\r\n") {
		return "", fmt.Errorf("token file %s has more than one line; it must hold only the token", file)
	}
	return token, nil
}

// sshCredentials holds a parsed private key (read once, at New: its
// passphrase must not be needed later) and where to check host keys. The
// known_hosts file is read again for every connection, like ssh does, so an
// operator who fixes it after a refused host key needs no restart.
type sshCredentials struct {
	user         string
	keyFile      string
	signer       ssh.Signer
	knownHosts   string
	hostWithPort string // as go-git dials it: host:port, port 22 when the URL has none
	timeout      time.Duration
}

func (c sshCredentials) method() (transport.AuthMethod, []string, error) {
	check, algos, err := loadHostKeyCheck(c.knownHosts, c.hostWithPort)
	if err != nil {
		return nil, nil, err
	}
	keys := &gitssh.PublicKeys{User: c.user, Signer: c.signer}
	keys.HostKeyCallback = check
	// Offer only the key types known_hosts has for this host. Left empty,
	// x/crypto/ssh prefers ECDSA and RSA over ed25519, so a server with
	// several host keys would present one known_hosts does not hold for it
	// and the right server would be refused as if its key had changed.
	keys.HostKeyAlgorithms = algos
	return &sshAuth{PublicKeys: keys, timeout: c.timeout}, nil, nil
}

// loadHostKeyCheck reads known_hosts and returns a host key callback that
// accepts only the keys it lists for hostWithPort (plain or hashed
// entries), refusing anything else with a *HostKeyError, and the host key
// algorithms to offer for that host.
func loadHostKeyCheck(file, hostWithPort string) (ssh.HostKeyCallback, []string, error) {
	// Checked here because go-git silently skips missing files and then
	// blames an SSH_KNOWN_HOSTS variable lockstep does not use.
	if _, err := os.Stat(file); err != nil {
		return nil, nil, fmt.Errorf("known_hosts file: %w", err)
	}
	db, err := gitssh.NewKnownHostsDb(file)
	if err != nil {
		return nil, nil, fmt.Errorf("load known_hosts file %s: %w", file, err)
	}
	algos := db.HostKeyAlgorithms(hostWithPort)
	if len(algos) == 0 {
		return nil, nil, fmt.Errorf("known_hosts file %s has no key for %s (entry %s); add the host's key, checked out of band (e.g. compare `ssh-keyscan -p PORT HOST` with what the git host publishes): lockstep never trusts a host key on first use",
			file, hostWithPort, knownhosts.Normalize(hostWithPort))
	}
	inner := db.HostKeyCallback()
	check := func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		err := inner(hostname, remote, key)
		if err == nil {
			return nil
		}
		return newHostKeyError(file, hostname, key, err)
	}
	return check, algos, nil
}

// refused explains a failed client authentication, which x/crypto/ssh
// reports only as "unable to authenticate", naming the key the server
// refused so the operator can find it among the git host's deploy keys.
// It matches transport.ErrAuthenticationRequired, so that callers treat it
// as they treat a refused token. Other errors come back unchanged.
func (c sshCredentials) refused(err error) error {
	if err == nil || !strings.Contains(err.Error(), "ssh: unable to authenticate") {
		return err
	}
	pub := c.signer.PublicKey()
	return fmt.Errorf("%w: the server refused ssh key %s (%s %s) for user %q; add its public key to the repository's deploy keys (read access is enough), or fix auth ssh_key: %w",
		transport.ErrAuthenticationRequired, c.keyFile, pub.Type(), ssh.FingerprintSHA256(pub), c.user, err)
}

// sshAuth adds a dial timeout to go-git's public key auth: go-git's SSH
// transport only bounds the TCP and handshake phase through ClientConfig.
type sshAuth struct {
	*gitssh.PublicKeys
	timeout time.Duration
}

func (a *sshAuth) ClientConfig() (*ssh.ClientConfig, error) {
	cfg, err := a.PublicKeys.ClientConfig()
	if err != nil {
		return nil, err
	}
	if cfg.HostKeyCallback == nil {
		// Never reached with keys built by sshCredentials; kept so that a
		// future edit cannot silently fall back to go-git's defaults.
		return nil, errors.New("ssh: no host key verification configured")
	}
	cfg.Timeout = a.timeout
	return cfg, nil
}

// newCredentials checks that the auth settings fit the URL's transport and
// loads what can be loaded up front, so that mistakes show at startup.
func newCredentials(ep *transport.Endpoint, t Transport, a Auth, timeout time.Duration) (credentials, error) {
	isHTTP := t == TransportHTTP
	isSSH := t == TransportSSH
	switch {
	case a.TokenFile != "" && !isHTTP:
		return nil, fmt.Errorf("auth token_file is only used with http(s) URLs, but the repo URL is %s; remove it or use an https URL", t)
	case (a.SSHKey != "" || a.SSHKeyPassphraseFile != "" || a.KnownHosts != "") && !isSSH:
		return nil, fmt.Errorf("auth ssh_key, ssh_key_passphrase_file and known_hosts are only used with ssh URLs, but the repo URL is %s; remove them or use an ssh URL", t)
	}
	switch {
	case isHTTP && a.TokenFile != "":
		if _, err := readToken(a.TokenFile); err != nil {
			return nil, err
		}
		user := ep.User
		if user == "" {
			user = defaultTokenUser
		}
		return tokenCredentials{user: user, file: a.TokenFile}, nil
	case isSSH:
		return newSSHCredentials(ep, a, timeout)
	}
	return noCredentials{}, nil
}

func newSSHCredentials(ep *transport.Endpoint, a Auth, timeout time.Duration) (credentials, error) {
	if a.SSHKey == "" {
		return nil, fmt.Errorf("repo URL uses ssh but auth ssh_key is not set; set it to the path of a private key (ssh-agent is not used)")
	}
	if a.KnownHosts == "" {
		return nil, fmt.Errorf("repo URL uses ssh but auth known_hosts is not set; set it to a known_hosts file holding %s's host key (e.g. from `ssh-keyscan %s`, checked out of band): host keys are always verified", ep.Host, ep.Host)
	}
	pem, err := os.ReadFile(a.SSHKey)
	if err != nil {
		return nil, fmt.Errorf("read ssh key: %w", err)
	}
	signer, err := parseSSHKey(a.SSHKey, pem, a.SSHKeyPassphraseFile)
	if err != nil {
		return nil, err
	}
	port := ep.Port
	if port <= 0 {
		port = gitssh.DefaultPort
	}
	c := sshCredentials{
		user:         ep.User,
		keyFile:      a.SSHKey,
		signer:       signer,
		knownHosts:   a.KnownHosts,
		hostWithPort: net.JoinHostPort(ep.Host, strconv.Itoa(port)),
		timeout:      timeout,
	}
	if c.user == "" {
		c.user = "git"
	}
	// Fail at startup, not at the first poll, when the host is not known.
	if _, _, err := loadHostKeyCheck(c.knownHosts, c.hostWithPort); err != nil {
		return nil, err
	}
	return c, nil
}

// parseSSHKey parses a private key, decrypting it with the passphrase file
// when the key is encrypted.
func parseSSHKey(keyFile string, pem []byte, passphraseFile string) (ssh.Signer, error) {
	signer, err := ssh.ParsePrivateKey(pem)
	var missing *ssh.PassphraseMissingError
	switch {
	case err == nil:
		return signer, nil
	case errors.As(err, &missing) && passphraseFile == "":
		return nil, fmt.Errorf("ssh key %s is encrypted; set auth ssh_key_passphrase_file to a file holding its passphrase", keyFile)
	case errors.As(err, &missing):
		pass, rerr := os.ReadFile(passphraseFile)
		if rerr != nil {
			return nil, fmt.Errorf("read ssh key passphrase: %w", rerr)
		}
		signer, err = ssh.ParsePrivateKeyWithPassphrase(pem, []byte(strings.TrimRight(string(pass), "\r\n")))
		if errors.Is(err, x509.IncorrectPasswordError) {
			return nil, fmt.Errorf("decrypt ssh key %s: the passphrase in %s is wrong; put the key's passphrase in that file (one line)", keyFile, passphraseFile)
		}
		if err != nil {
			// The error text comes from key parsing and never holds the
			// passphrase.
			return nil, fmt.Errorf("decrypt ssh key %s with the passphrase from %s: %w", keyFile, passphraseFile, err)
		}
		return signer, nil
	default:
		return nil, fmt.Errorf("parse ssh key %s: %w", keyFile, err)
	}
}
