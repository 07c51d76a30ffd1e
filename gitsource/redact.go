package gitsource

import (
	"errors"
	"net/url"
	"regexp"
	"strings"
)

// RedactURL returns u with any password or token removed from its userinfo
// (the user name is kept, so logs still say who connected), for logs and
// errors. Strings that are not URLs with credentials come back unchanged.
func RedactURL(u string) string {
	parsed, err := url.Parse(u)
	if err != nil || parsed.User == nil {
		// Not parseable (an scp-like address, a path) or no userinfo: still
		// strip anything that looks like scheme://user:secret@ inside it.
		return credentialsInText.ReplaceAllString(u, "${1}${2}@")
	}
	if _, hasPassword := parsed.User.Password(); !hasPassword {
		return u
	}
	if user := parsed.User.Username(); user != "" {
		parsed.User = url.User(user)
	} else {
		parsed.User = nil
	}
	return parsed.String()
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
