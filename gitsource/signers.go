package gitsource

// The SSH allowed_signers file (ssh-keygen(1), "ALLOWED SIGNERS"), as git
// uses it through gpg.ssh.allowedSignersFile: one
//
//	principals [options] keytype base64-key [comment]
//
// per line. lockstep reads it itself instead of running ssh-keygen, and
// refuses what it does not implement (certificate authorities, unknown
// options) instead of skipping it, so a line never means less than the
// operator thinks.

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// maxSignersFileBytes bounds the file read at startup; a real one is a few
// lines per person.
const maxSignersFileBytes = 4 << 20

// allowedSigners is a parsed allowed_signers file.
type allowedSigners struct {
	file    string
	entries []signerEntry
}

// signerEntry is one line: a key, who it is, and where and when it may sign.
type signerEntry struct {
	line        int
	principals  string // as written (without quotes): what git prints as the signer
	key         ssh.PublicKey
	keyBlob     string   // key.Marshal(), to compare keys
	namespaces  []string // pattern list; nil means every namespace
	validAfter  time.Time
	validBefore time.Time
}

// sshKeyTypes are the key types an allowed_signers line may name.
// Certificates are not among them: they need cert-authority, which is
// refused.
var sshKeyTypes = map[string]bool{
	ssh.KeyAlgoED25519:     true,
	ssh.KeyAlgoSKED25519:   true,
	ssh.KeyAlgoECDSA256:    true,
	ssh.KeyAlgoECDSA384:    true,
	ssh.KeyAlgoECDSA521:    true,
	ssh.KeyAlgoSKECDSA256:  true,
	ssh.KeyAlgoRSA:         true,
	ssh.InsecureKeyAlgoDSA: true, // recognized to refuse it by name
}

// parseAllowedSigners parses data, read from file. Every bad line is
// reported, each with its number, in one error. A file without a single
// key is an error too: it would refuse every SSH-signed commit.
func parseAllowedSigners(file string, data []byte) (*allowedSigners, error) {
	if len(data) > maxSignersFileBytes {
		return nil, fmt.Errorf("ssh_allowed_signers file %s: %d bytes is too large for an allowed signers file", file, len(data))
	}
	a := &allowedSigners{file: file}
	var problems []string
	for i, raw := range bytes.Split(data, []byte("\n")) {
		line := strings.TrimSpace(string(raw))
		if line == "" || line[0] == '#' {
			continue
		}
		e, err := parseSignerLine(line)
		if err != nil {
			problems = append(problems, fmt.Sprintf("line %d: %v", i+1, err))
			continue
		}
		e.line = i + 1
		a.entries = append(a.entries, e)
	}
	switch {
	case len(problems) == 1:
		return nil, fmt.Errorf("ssh_allowed_signers file %s: %s", file, problems[0])
	case len(problems) > 1:
		return nil, fmt.Errorf("ssh_allowed_signers file %s: %d bad lines:\n  %s", file, len(problems), strings.Join(problems, "\n  "))
	case len(a.entries) == 0:
		return nil, fmt.Errorf("ssh_allowed_signers file %s holds no keys; add a line `principal ssh-ed25519 AAAA...` per trusted signer, or unset ssh_allowed_signers", file)
	}
	return a, nil
}

func parseSignerLine(line string) (signerEntry, error) {
	var e signerEntry
	principals, rest, err := nextField(line)
	if err != nil {
		return e, fmt.Errorf("principals: %w", err)
	}
	if principals == "" {
		return e, errors.New("empty principals; start the line with who the key belongs to, e.g. alice@example.com")
	}
	for p := range strings.SplitSeq(principals, ",") {
		if p == "" {
			return e, fmt.Errorf("principals %q: empty entry in the comma-separated list", principals)
		}
	}
	e.principals = principals

	// Options come before the key type; a field that is not a key type is
	// the options when the one after it is a key type.
	first, after, err := nextField(rest)
	if err != nil {
		return e, err
	}
	if !sshKeyTypes[first] {
		second, _, _ := nextField(after)
		if first == "" || !sshKeyTypes[second] {
			return e, fmt.Errorf("expected [options] keytype base64-key after the principals, got %q", truncate(rest, 40))
		}
		if err := e.parseOptions(first); err != nil {
			return e, err
		}
		rest = after
	}

	keyType, rest, _ := nextField(rest)
	encoded, _, _ := nextField(rest) // what follows is a comment
	if keyType == ssh.InsecureKeyAlgoDSA {
		return e, errors.New("ssh-dss (DSA) keys are refused: they sign with SHA-1; use an ed25519 key")
	}
	if encoded == "" {
		return e, fmt.Errorf("%s key: the base64 key is missing", keyType)
	}
	blob, err := base64.StdEncoding.DecodeString(encoded)
	if err != nil {
		return e, fmt.Errorf("%s key: not valid base64: %v", keyType, err)
	}
	key, err := ssh.ParsePublicKey(blob)
	if err != nil {
		return e, fmt.Errorf("%s key: %v", keyType, err)
	}
	if key.Type() != keyType {
		return e, fmt.Errorf("the key is of type %s, but the line says %s", key.Type(), keyType)
	}
	if bits := rsaBits(key); key.Type() == ssh.KeyAlgoRSA && bits < minRSABits {
		return e, fmt.Errorf("RSA key of %d bits is too weak; at least %d are required", bits, minRSABits)
	}
	e.key = key
	e.keyBlob = string(key.Marshal())
	return e, nil
}

// parseOptions reads the comma-separated options field.
func (e *signerEntry) parseOptions(field string) error {
	seen := map[string]bool{}
	for _, opt := range splitOptions(field) {
		name, value, hasValue := strings.Cut(opt, "=")
		name = strings.ToLower(name)
		if seen[name] {
			return fmt.Errorf("option %s is given twice", name)
		}
		seen[name] = true
		if name == "cert-authority" {
			return errors.New("cert-authority: SSH certificates are not supported; list each signer's plain public key instead")
		}
		if name != "namespaces" && name != "valid-after" && name != "valid-before" {
			return fmt.Errorf("unknown option %q (lockstep honours namespaces, valid-after and valid-before)", truncate(name, 40))
		}
		if !hasValue {
			return fmt.Errorf("option %s needs a quoted value, e.g. %s=%q", name, name, optionExample(name))
		}
		v, err := unquoteOption(value)
		if err != nil {
			return fmt.Errorf("option %s: %w", name, err)
		}
		switch name {
		case "namespaces":
			if v == "" {
				return errors.New(`option namespaces is empty; write namespaces="git"`)
			}
			e.namespaces = strings.Split(v, ",")
		case "valid-after":
			if e.validAfter, err = parseSignerTime(v); err != nil {
				return fmt.Errorf("option valid-after: %w", err)
			}
		case "valid-before":
			if e.validBefore, err = parseSignerTime(v); err != nil {
				return fmt.Errorf("option valid-before: %w", err)
			}
		}
	}
	if !e.validAfter.IsZero() && !e.validBefore.IsZero() && !e.validBefore.After(e.validAfter) {
		return errors.New("valid-before is not after valid-after: the key could never sign")
	}
	return nil
}

func optionExample(name string) string {
	if name == "namespaces" {
		return "git"
	}
	return "20240101"
}

// lookup returns the lines that list key.
func (a *allowedSigners) lookup(key ssh.PublicKey) []signerEntry {
	blob := string(key.Marshal())
	var out []signerEntry
	for _, e := range a.entries {
		if e.keyBlob == blob {
			out = append(out, e)
		}
	}
	return out
}

// permits says why this line does not allow a signature in namespace made
// at t (the commit's committer time, as git passes it to ssh-keygen), or ""
// when it does.
func (e signerEntry) permits(namespace string, t time.Time) string {
	if e.namespaces != nil && !matchPatternList(namespace, e.namespaces) {
		return fmt.Sprintf("line %d allows the key only for namespaces=%q, not %s", e.line, strings.Join(e.namespaces, ","), namespace)
	}
	if !e.validAfter.IsZero() && t.Before(e.validAfter) {
		return fmt.Sprintf("line %d accepts the key only from %s (valid-after), and the commit's committer date is %s",
			e.line, e.validAfter.UTC().Format(time.RFC3339), t.UTC().Format(time.RFC3339))
	}
	if !e.validBefore.IsZero() && t.After(e.validBefore) {
		return fmt.Sprintf("line %d accepts the key only until %s (valid-before), and the commit's committer date is %s",
			e.line, e.validBefore.UTC().Format(time.RFC3339), t.UTC().Format(time.RFC3339))
	}
	return ""
}

// nextField returns the first whitespace-separated field of s and what
// follows it. A field may hold double-quoted parts (principals with
// spaces, option values); the quotes are kept except around a whole
// principals field, which ssh-keygen also strips.
func nextField(s string) (field, rest string, err error) {
	s = strings.TrimLeft(s, " \t")
	if strings.HasPrefix(s, `"`) {
		end := strings.IndexByte(s[1:], '"')
		if end < 0 {
			return "", "", errors.New("unterminated double quote")
		}
		field, rest = s[1:1+end], s[2+end:]
		if rest != "" && rest[0] != ' ' && rest[0] != '\t' {
			return "", "", fmt.Errorf("text right after the closing quote of %q", truncate(field, 40))
		}
		return field, rest, nil
	}
	inQuote := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' && inQuote && i+1 < len(s):
			i++
		case c == '"':
			inQuote = !inQuote
		case (c == ' ' || c == '\t') && !inQuote:
			return s[:i], s[i:], nil
		}
	}
	if inQuote {
		return "", "", errors.New("unterminated double quote")
	}
	return s, "", nil
}

// splitOptions splits an options field at the commas outside quotes.
func splitOptions(field string) []string {
	var out []string
	inQuote, start := false, 0
	for i := 0; i < len(field); i++ {
		switch c := field[i]; {
		case c == '\\' && inQuote && i+1 < len(field):
			i++
		case c == '"':
			inQuote = !inQuote
		case c == ',' && !inQuote:
			out = append(out, field[start:i])
			start = i + 1
		}
	}
	return append(out, field[start:])
}

// unquoteOption reads an option value: double-quoted, with \" for a quote.
func unquoteOption(v string) (string, error) {
	if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
		return "", fmt.Errorf("value %q must be in double quotes", truncate(v, 40))
	}
	v = v[1 : len(v)-1]
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		if v[i] == '\\' && i+1 < len(v) && v[i+1] == '"' {
			i++
		} else if v[i] == '"' {
			return "", errors.New(`stray double quote in the value; write \" for a quote`)
		}
		b.WriteByte(v[i])
	}
	return b.String(), nil
}

// parseSignerTime reads YYYYMMDD[Z] or YYYYMMDDHHMM[SS][Z], in the local
// time zone unless it ends in Z, as ssh-keygen does.
func parseSignerTime(v string) (time.Time, error) {
	loc := time.Local
	digits, utc := strings.CutSuffix(v, "Z")
	if utc {
		loc = time.UTC
	}
	layouts := map[int]string{8: "20060102", 12: "200601021504", 14: "20060102150405"}
	layout, ok := layouts[len(digits)]
	if !ok || strings.Trim(digits, "0123456789") != "" {
		return time.Time{}, fmt.Errorf("%q is not YYYYMMDD[Z] or YYYYMMDDHHMM[SS][Z]", truncate(v, 40))
	}
	t, err := time.ParseInLocation(layout, digits, loc)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q: %v", v, err)
	}
	return t, nil
}

// matchPatternList matches s against an OpenSSH pattern list: a negated
// pattern (!p) that matches refuses at once; otherwise any plain pattern
// that matches accepts.
func matchPatternList(s string, patterns []string) bool {
	ok := false
	for _, p := range patterns {
		if neg, found := strings.CutPrefix(p, "!"); found {
			if matchPattern(s, neg) {
				return false
			}
		} else if matchPattern(s, p) {
			ok = true
		}
	}
	return ok
}

// matchPattern is OpenSSH's wildcard match: * for any run of characters, ?
// for one. It backtracks only to the last *, so it runs in O(len(s) *
// len(p)) however the pattern is written.
func matchPattern(s, p string) bool {
	si, pi := 0, 0
	star, mark := -1, 0
	for si < len(s) {
		switch {
		case pi < len(p) && (p[pi] == '?' || p[pi] == s[si]):
			si++
			pi++
		case pi < len(p) && p[pi] == '*':
			star, mark = pi, si
			pi++
		case star >= 0:
			pi = star + 1
			mark++
			si = mark
		default:
			return false
		}
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
