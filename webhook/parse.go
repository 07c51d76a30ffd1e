package webhook

import (
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strings"
)

// Kind is what a delivery is about, as far as lockstep cares.
type Kind string

const (
	KindPush  Kind = "push"  // commits were pushed (branches or tags)
	KindPing  Kind = "ping"  // the git host checks the hook is reachable
	KindOther Kind = "other" // any other event: answered, ignored
)

// Event is what ParsePush reads from a verified delivery: only enough to
// decide whether to look at git now. Nothing in it is used as desired
// state.
type Event struct {
	Kind Kind
	// Name is the event as the provider names it ("push", "Push Hook",
	// "repo:push"), for logs.
	Name string
	// Branches are the short names of the branches a push updated
	// (Bitbucket can update several in one delivery). Empty for a push of
	// tags only, and for every other kind.
	Branches []string
}

// Pushes reports whether e is a push that updated branch.
func (e Event) Pushes(branch string) bool {
	if e.Kind != KindPush {
		return false
	}
	for _, b := range e.Branches {
		if b == branch {
			return true
		}
	}
	return false
}

// Event headers, per provider.
const (
	headerGitHubEvent  = "X-GitHub-Event"
	headerGitLabEvent  = "X-Gitlab-Event"
	headerGiteaEvent   = "X-Gitea-Event"
	headerForgejoEvent = "X-Forgejo-Event"
	headerBitbucketKey = "X-Event-Key"
)

// ParsePush reads the event kind from the headers and, for a push, the
// branches it updated from the body. It must only be given a delivery that
// Verify accepted. An error means the delivery is malformed (a missing
// event header, a push body that is not the provider's JSON).
//
// GitHub and Gitea/Forgejo may be configured to send the JSON as a form
// field (Content-Type application/x-www-form-urlencoded, field payload);
// both forms are read.
func ParsePush(p Provider, h http.Header, body []byte) (Event, error) {
	switch p {
	case GitHub:
		name := h.Get(headerGitHubEvent)
		switch name {
		case "":
			return Event{}, fmt.Errorf("%s header missing", headerGitHubEvent)
		case "ping":
			return Event{Kind: KindPing, Name: name}, nil
		case "push":
			return parseRefPush(p, name, h, body)
		}
		return Event{Kind: KindOther, Name: name}, nil

	case GitLab:
		name := h.Get(headerGitLabEvent)
		switch name {
		case "":
			return Event{}, fmt.Errorf("%s header missing", headerGitLabEvent)
		case "Push Hook":
			return parseRefPush(p, name, h, body)
		case "System Hook":
			// A system hook carries every kind of instance event under
			// one header; object_kind tells a push from the rest.
			var kind struct {
				ObjectKind string `json:"object_kind"`
			}
			if err := json.Unmarshal(body, &kind); err != nil {
				return Event{}, fmt.Errorf("%s body is not JSON: %w", name, err)
			}
			if kind.ObjectKind == "push" {
				return parseRefPush(p, name, h, body)
			}
		}
		// GitLab has no ping event: its "Test" button sends a real push.
		return Event{Kind: KindOther, Name: name}, nil

	case Gitea:
		name := h.Get(headerForgejoEvent)
		if name == "" {
			name = h.Get(headerGiteaEvent)
		}
		switch name {
		case "":
			return Event{}, fmt.Errorf("neither %s nor %s header present", headerGiteaEvent, headerForgejoEvent)
		case "push":
			return parseRefPush(p, name, h, body)
		}
		return Event{Kind: KindOther, Name: name}, nil

	case Bitbucket:
		name := h.Get(headerBitbucketKey)
		switch name {
		case "":
			return Event{}, fmt.Errorf("%s header missing", headerBitbucketKey)
		case "diagnostics:ping":
			return Event{Kind: KindPing, Name: name}, nil
		case "repo:push":
			return parseBitbucketPush(name, body)
		}
		return Event{Kind: KindOther, Name: name}, nil
	}
	return Event{}, fmt.Errorf("unknown webhook provider %q", p)
}

// parseRefPush reads the "ref" of a GitHub, GitLab or Gitea push body.
func parseRefPush(p Provider, name string, h http.Header, body []byte) (Event, error) {
	payload, err := jsonPayload(p, h, body)
	if err != nil {
		return Event{}, fmt.Errorf("%s body: %w", name, err)
	}
	var push struct {
		Ref *string `json:"ref"`
	}
	if err := json.Unmarshal(payload, &push); err != nil {
		return Event{}, fmt.Errorf("%s body is not a push payload: %w", name, err)
	}
	if push.Ref == nil {
		return Event{}, fmt.Errorf("%s body has no \"ref\"", name)
	}
	ev := Event{Kind: KindPush, Name: name}
	if b, ok := strings.CutPrefix(*push.Ref, "refs/heads/"); ok && b != "" {
		ev.Branches = []string{b}
	}
	return ev, nil
}

// jsonPayload returns the JSON document of a delivery: the body itself, or
// its payload form field when the hook is configured to send a form.
func jsonPayload(p Provider, h http.Header, body []byte) ([]byte, error) {
	if p != GitHub && p != Gitea {
		return body, nil
	}
	ct := h.Get("Content-Type")
	if ct == "" {
		return body, nil
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return body, nil
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, fmt.Errorf("form body: %w", err)
	}
	payload := form.Get("payload")
	if payload == "" {
		return nil, errors.New("form body has no payload field")
	}
	return []byte(payload), nil
}

// parseBitbucketPush reads push.changes[].new of a Bitbucket Cloud repo:push
// body. A change whose new is null deleted a branch or tag; a change whose
// new.type is "tag" pushed a tag: neither names a branch that moved.
func parseBitbucketPush(name string, body []byte) (Event, error) {
	var push struct {
		Push *struct {
			Changes []struct {
				New *struct {
					Type string `json:"type"`
					Name string `json:"name"`
				} `json:"new"`
			} `json:"changes"`
		} `json:"push"`
	}
	if err := json.Unmarshal(body, &push); err != nil {
		return Event{}, fmt.Errorf("%s body is not a push payload: %w", name, err)
	}
	if push.Push == nil {
		return Event{}, fmt.Errorf("%s body has no \"push\"", name)
	}
	ev := Event{Kind: KindPush, Name: name}
	for _, c := range push.Push.Changes {
		if c.New != nil && c.New.Type == "branch" && c.New.Name != "" {
			ev.Branches = append(ev.Branches, c.New.Name)
		}
	}
	return ev, nil
}
