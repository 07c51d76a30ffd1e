package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Provider names a git host whose push deliveries the receiver accepts. It
// is also the last element of the delivery path: /hooks/<provider>.
type Provider string

// The providers lockstep accepts deliveries from.
const (
	GitHub    Provider = "github"
	GitLab    Provider = "gitlab"
	Gitea     Provider = "gitea" // Gitea and Forgejo: Forgejo keeps Gitea's protocol and adds X-Forgejo-* headers
	Bitbucket Provider = "bitbucket"
)

// Providers returns every provider, in the order their routes are listed.
func Providers() []Provider { return []Provider{GitHub, GitLab, Gitea, Bitbucket} }

func (p Provider) valid() bool {
	switch p {
	case GitHub, GitLab, Gitea, Bitbucket:
		return true
	}
	return false
}

// Signature headers, per provider.
const (
	headerGitHubSignature    = "X-Hub-Signature-256"
	headerGitLabToken        = "X-Gitlab-Token"
	headerGiteaSignature     = "X-Gitea-Signature"
	headerForgejoSignature   = "X-Forgejo-Signature"
	headerBitbucketSignature = "X-Hub-Signature"
)

// ErrMissingSignature is returned by Verify when a delivery carries no
// signature (or token) header at all: usually a webhook configured without
// a secret on the git host.
var ErrMissingSignature = errors.New("delivery carries no signature")

// ErrBadSignature is returned by Verify when a delivery's signature does not
// match the body under the shared secret: a forged delivery, or a git host
// configured with another secret.
var ErrBadSignature = errors.New("delivery signature does not match the shared secret")

// Verify checks one delivery's signature over the raw body, in constant
// time. It must be called before anything in the body is looked at: nothing
// of an unverified delivery is parsed.
//
// The errors it returns match ErrMissingSignature or ErrBadSignature with
// errors.Is (and name the header); they never contain the signature or the
// secret.
func Verify(p Provider, secret []byte, h http.Header, body []byte) error {
	if !p.valid() {
		return fmt.Errorf("unknown webhook provider %q", p)
	}
	if len(secret) == 0 {
		// An empty key would make every HMAC computable by anyone.
		return fmt.Errorf("%s: no secret configured: %w", p, ErrBadSignature)
	}
	switch p {
	case GitHub:
		return verifyPrefixedHMAC(h, headerGitHubSignature, secret, body)
	case Bitbucket:
		return verifyPrefixedHMAC(h, headerBitbucketSignature, secret, body)
	case GitLab:
		token := h.Get(headerGitLabToken)
		if token == "" {
			return fmt.Errorf("%s header missing: %w", headerGitLabToken, ErrMissingSignature)
		}
		// GitLab sends the secret itself. Comparing digests rather than
		// the raw values keeps the comparison constant-time even in the
		// length, which subtle.ConstantTimeCompare alone would leak.
		want := sha256.Sum256(secret)
		got := sha256.Sum256([]byte(token))
		if subtle.ConstantTimeCompare(want[:], got[:]) != 1 {
			return fmt.Errorf("%s header: %w", headerGitLabToken, ErrBadSignature)
		}
		return nil
	case Gitea:
		// Forgejo sends both headers with the same value; Gitea only the
		// first. Either one verifying is enough: neither can be produced
		// without the secret.
		var present []string
		for _, name := range []string{headerGiteaSignature, headerForgejoSignature} {
			sig := h.Get(name)
			if sig == "" {
				continue
			}
			present = append(present, name)
			if hmacMatches(secret, body, sig) {
				return nil
			}
		}
		if len(present) == 0 {
			return fmt.Errorf("neither %s nor %s header present: %w", headerGiteaSignature, headerForgejoSignature, ErrMissingSignature)
		}
		return fmt.Errorf("%s header: %w", strings.Join(present, " and "), ErrBadSignature)
	}
	return fmt.Errorf("unknown webhook provider %q", p)
}

// verifyPrefixedHMAC checks a "sha256=<hex>" header, the form GitHub and
// Bitbucket Cloud share.
func verifyPrefixedHMAC(h http.Header, name string, secret, body []byte) error {
	v := h.Get(name)
	if v == "" {
		return fmt.Errorf("%s header missing: %w", name, ErrMissingSignature)
	}
	hexSig, ok := strings.CutPrefix(v, "sha256=")
	if !ok {
		return fmt.Errorf("%s header is not of the form sha256=<hex>: %w", name, ErrBadSignature)
	}
	if !hmacMatches(secret, body, hexSig) {
		return fmt.Errorf("%s header: %w", name, ErrBadSignature)
	}
	return nil
}

// hmacMatches reports whether hexSig is the hex HMAC-SHA256 of body under
// secret. hmac.Equal is constant-time; the hex decoding before it only
// depends on the attacker's own input.
func hmacMatches(secret, body []byte, hexSig string) bool {
	got, err := hex.DecodeString(strings.TrimSpace(hexSig))
	if err != nil || len(got) != sha256.Size {
		return false
	}
	return hmac.Equal(got, Sign(secret, body))
}

// Sign returns the HMAC-SHA256 of body under secret, the value GitHub,
// Gitea/Forgejo and Bitbucket send (hex-encoded). It exists for tests and
// for tools that replay deliveries.
func Sign(secret, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return m.Sum(nil)
}
