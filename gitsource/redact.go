package gitsource

import (
	"errors"
	"net/url"
	"regexp"
	"strings"
)

// RedactURL returns u with anything in it that may be a credential
// removed, for logs, errors and messages: lockstep's one URL redactor.
//
//   - A password or token after the user name is dropped; the user name is
//     kept (an account such as "x-access-token" or "oauth2"), so logs still
//     say who connected.
//   - A user name alone is replaced by "REDACTED" unless the URL is ssh
//     (ssh://, scp-like user@host:path), whose user is an account such as
//     "git": over http(s) a token pasted as the user name is sent as one.
//   - Text that does not parse as a URL (an scp-like address, a bad
//     escape, free text) still loses anything that looks like
//     user:secret@ inside it.
//
// Strings without credentials come back unchanged.
func RedactURL(u string) string {
	parsed, err := url.Parse(u)
	if err != nil || parsed.User == nil {
		return redactUnparsed(u)
	}
	if _, hasPassword := parsed.User.Password(); !hasPassword {
		if parsed.User.Username() == "" || sshSchemes[parsed.Scheme] {
			return u
		}
		parsed.User = url.User("REDACTED")
		return parsed.String()
	}
	if user := parsed.User.Username(); user != "" {
		parsed.User = url.User(user)
	} else {
		parsed.User = nil
	}
	return parsed.String()
}

// sshSchemes are the schemes whose user name is an account, not a secret.
var sshSchemes = map[string]bool{"ssh": true, "git+ssh": true, "ssh+git": true}

// redactUnparsed handles what url.Parse rejects or reads without userinfo:
// URLs with a bad escape, scp-like addresses ("me:secret@host/x" is one to
// git, with the secret as part of the host), paths. It applies RedactURL's
// rules to the userinfo before the first slash after any scheme.
func redactUnparsed(u string) string {
	start, scheme := 0, ""
	if i := strings.Index(u, "://"); i >= 0 {
		start, scheme = i+3, u[:i]
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
	if colon := strings.IndexByte(user, ':'); colon >= 0 {
		user = user[:colon]
		if user == "" && start > 0 {
			return u[:start] + u[start+at+1:]
		}
		return u[:start] + user + u[start+at:]
	}
	if user == "" || start == 0 || sshSchemes[strings.ToLower(scheme)] {
		return u
	}
	return u[:start] + "REDACTED" + u[start+at:]
}

// credentialsInText matches the userinfo of URLs embedded in free text
// (error messages of go-git or net/http), capturing the scheme and user so
// that only the secret is dropped.
var credentialsInText = regexp.MustCompile(`([a-zA-Z][a-zA-Z0-9+.-]*://)([^:/@\s]*):[^@\s/]*@`)

// scrubber removes known secrets from text that may have been produced by a
// dependency which embeds URLs or credentials in its errors.
type scrubber struct {
	url     string
	secrets []string
}

func (s scrubber) text(msg string) string {
	for _, secret := range s.secrets {
		// Very short secrets would mangle unrelated words and are not
		// worth hiding from anyone; real tokens are long.
		if len(secret) >= 4 {
			msg = strings.ReplaceAll(msg, secret, "***")
		}
	}
	if s.url != "" {
		if r := RedactURL(s.url); r != s.url {
			msg = strings.ReplaceAll(msg, s.url, r)
		}
	}
	return credentialsInText.ReplaceAllString(msg, "${1}${2}@")
}

// err returns err with its message scrubbed. errors.Is still sees through
// it (so callers can test for transport.ErrAuthenticationRequired and the
// like), but errors.Unwrap and errors.As do not: the original error's text
// may hold the secret and must not be reachable.
func (s scrubber) err(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	clean := s.text(msg)
	if clean == msg {
		return err
	}
	return &scrubbedError{msg: clean, inner: err}
}

type scrubbedError struct {
	msg   string
	inner error
}

func (e *scrubbedError) Error() string { return e.msg }

// Is reports whether the original error matches target, without exposing
// the original error itself.
func (e *scrubbedError) Is(target error) bool {
	return errors.Is(e.inner, target)
}
