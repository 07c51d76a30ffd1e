package gitsource

import (
	"errors"
	"fmt"
	"net/url"
	"path"
	"regexp"
	"strings"
)

// Transport is how a repository URL is reached; it decides which
// credentials make sense.
type Transport int

const (
	TransportInvalid Transport = iota
	TransportHTTP              // https:// or http://
	TransportSSH               // ssh:// or scp-like user@host:path
	TransportLocal             // file:// or an absolute path
)

// String says what kind of URL it is, to end a sentence with ("... but
// [repo].url is an ssh URL").
func (t Transport) String() string {
	switch t {
	case TransportHTTP:
		return "an http(s) URL"
	case TransportSSH:
		return "an ssh URL"
	case TransportLocal:
		return "a local repository"
	}
	return "an invalid URL"
}

// scpLikeRE matches git's scp-like syntax, [user@]host:path, which git only
// recognises when no slash comes before the colon.
var scpLikeRE = regexp.MustCompile(`^(?:[^@/:]+@)?([^@/:]+):(.+)$`)

// ParseURL says how the repository URL u is reached, or why lockstep does
// not accept it: the one reading of a repo URL, which config shows at
// validate time and New applies at startup. The error is a sentence for
// operators and shows u only through RedactURL.
func ParseURL(u string) (Transport, error) {
	// "//host/x" reads as a URL without a scheme ("//me:token@host/x"
	// looks like credentials) but would be taken as a local path: say
	// which is meant. Found by config's FuzzParse.
	if strings.HasPrefix(u, "//") {
		// Not shown: whatever it means, it is not a URL to repeat.
		return TransportInvalid, errors.New("starts with //: a path on this host starts with a single /, and a URL needs its scheme (https://, ssh://, file://)")
	}
	if strings.HasPrefix(u, "/") {
		return TransportLocal, nil
	}
	shown := RedactURL(u)
	if !strings.Contains(u, "://") {
		if scpLikeRE.MatchString(u) {
			return TransportSSH, nil
		}
		return TransportInvalid, fmt.Errorf("%q is not a repository URL: use https://, http://, ssh://, user@host:path, file:// or an absolute path", shown)
	}
	parsed, err := url.Parse(u)
	if err != nil {
		return TransportInvalid, fmt.Errorf("%q is not a valid URL", shown)
	}
	if _, hasPassword := parsed.User.Password(); hasPassword {
		return TransportInvalid, fmt.Errorf("%q holds a password: credentials never go in the config text; put the token in a file and set token_file", shown)
	}
	switch parsed.Scheme {
	case "https", "http", "ssh":
		if parsed.Host == "" {
			return TransportInvalid, fmt.Errorf("%q has no host", shown)
		}
		if parsed.Scheme == "ssh" {
			return TransportSSH, nil
		}
		return TransportHTTP, nil
	case "file":
		if parsed.Host != "" && parsed.Host != "localhost" {
			return TransportInvalid, fmt.Errorf("%q: a file:// URL must name a local path (file:///srv/repo)", shown)
		}
		if !path.IsAbs(parsed.Path) {
			return TransportInvalid, fmt.Errorf("%q: a file:// URL must name an absolute path (file:///srv/repo)", shown)
		}
		return TransportLocal, nil
	}
	return TransportInvalid, fmt.Errorf("scheme %q is not supported: use https://, http://, ssh://, user@host:path, file:// or an absolute path", parsed.Scheme)
}
