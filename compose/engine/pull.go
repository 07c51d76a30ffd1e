package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/moby/moby/api/pkg/authconfig"
	"github.com/moby/moby/api/types/registry"
	"github.com/moby/moby/client"
)

// PullError is a pull the registry (or the engine talking to it) refused.
// Its message names the image and quotes what the registry said; callers
// branch on the kind with errors.Is(err, cerrdefs.ErrNotFound) or
// errors.Is(err, cerrdefs.ErrUnauthenticated).
type PullError struct {
	Image    string // the reference as asked
	Registry string // registry host, "docker.io" for Docker Hub
	Message  string // what the engine reported, verbatim
	NotFound bool   // the registry has no such repository or tag
	Denied   bool   // the registry refused our credentials (or their absence)
	// Resolve: it was a digest lookup (Swarm.ResolveImage), not a pull.
	Resolve bool
}

func (e *PullError) Error() string {
	op := "pull"
	if e.Resolve {
		op = "resolve the digest of"
	}
	switch {
	case e.Denied:
		return fmt.Sprintf("%s %s: registry %s denied access (%s): check the credentials for %s in the Docker config (docker login %s)", op, e.Image, e.Registry, e.Message, e.Registry, e.Registry)
	case e.NotFound:
		return fmt.Sprintf("image %s not found in registry %s (%s): check the image name and tag, and that CI pushed it", e.Image, e.Registry, e.Message)
	default:
		return fmt.Sprintf("%s %s from registry %s: %s", op, e.Image, e.Registry, e.Message)
	}
}

// Is lets callers use the engine's error classes.
func (e *PullError) Is(target error) bool {
	switch {
	case e.NotFound:
		return target == cerrdefs.ErrNotFound
	case e.Denied:
		return target == cerrdefs.ErrUnauthenticated
	}
	return false
}

// Pull pulls ref and returns the local image ID. The engine reports most
// registry failures inside the progress stream with HTTP 200, so the stream
// is read to the end and its error messages are the result.
func (e *Engine) Pull(ctx context.Context, ref string) (string, error) {
	e.call(ctx, "pull", ref)
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return "", fmt.Errorf("pull %s: not a valid image reference: %w", ref, err)
	}
	reg := reference.Domain(named)
	auth, err := registryAuth(ctx, e.keychain, reg)
	if err != nil {
		// The keychain's own error text is about config files and helpers,
		// never the secret itself.
		return "", fmt.Errorf("pull %s: read credentials for registry %s from the Docker config: %w", ref, reg, err)
	}
	log := e.logger(ctx).With().Str("image", ref).Str("registry", reg).Bool("credentials", auth != "").Logger()
	log.Debug().Msg("pulling image")

	resp, err := e.cli.ImagePull(ctx, ref, client.ImagePullOptions{RegistryAuth: auth})
	if err != nil {
		return "", pullFailed(ref, reg, err)
	}
	defer resp.Close()
	for msg, err := range resp.JSONMessages(ctx) {
		if err != nil {
			return "", fmt.Errorf("pull %s: read the engine's progress stream: %w", ref, err)
		}
		if msg.Error != nil {
			return "", pullFailed(ref, reg, msg.Error)
		}
	}

	img, err := e.cli.ImageInspect(ctx, ref)
	if err != nil {
		return "", fmt.Errorf("pull %s: inspect the pulled image: %w", ref, err)
	}
	log.Debug().Str("image_id", img.ID).Msg("pulled image")
	return img.ID, nil
}

// pullFailed classifies an engine error about a pull. Transport and context
// errors are not the registry's word and stay as they are.
func pullFailed(ref, reg string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || client.IsErrConnectionFailed(err) {
		return fmt.Errorf("pull %s: %w", ref, err)
	}
	msg := err.Error()
	low := strings.ToLower(msg)
	pe := &PullError{Image: ref, Registry: reg, Message: msg}
	switch {
	case cerrdefs.IsUnauthorized(err) || cerrdefs.IsPermissionDenied(err) ||
		strings.Contains(low, "unauthorized") || strings.Contains(low, "denied") || strings.Contains(low, "authentication required") ||
		strings.Contains(low, "no basic auth credentials"):
		pe.Denied = true
	case cerrdefs.IsNotFound(err) || strings.Contains(low, "manifest unknown") || strings.Contains(low, "not found") || strings.Contains(low, "name unknown"):
		pe.NotFound = true
	}
	return pe
}

// registryAuth returns the X-Registry-Auth value for reg: the base64url JSON
// of registry.AuthConfig, as the engine expects it, or "" for anonymous.
func registryAuth(ctx context.Context, kc authn.Keychain, reg string) (string, error) {
	r, err := name.NewRegistry(reg)
	if err != nil {
		return "", err
	}
	a, err := authn.Resolve(ctx, kc, r)
	if err != nil {
		return "", err
	}
	cfg, err := authn.Authorization(ctx, a)
	if err != nil {
		return "", err
	}
	if cfg == nil || *cfg == (authn.AuthConfig{}) {
		return "", nil
	}
	return authconfig.Encode(registry.AuthConfig{
		Username:      cfg.Username,
		Password:      cfg.Password,
		Auth:          cfg.Auth,
		IdentityToken: cfg.IdentityToken,
		RegistryToken: cfg.RegistryToken,
		ServerAddress: reg,
	})
}
