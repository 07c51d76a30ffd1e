package engine

import (
	"context"

	"github.com/containerd/platforms"
	"github.com/moby/moby/api/types/image"
	"github.com/moby/moby/client"
	"github.com/moby/moby/client/pkg/versions"
)

// Docker Compose compares a container's com.docker.compose.image label with
// the identity of the local image of its reference, and recreates the
// container when they differ (mustRecreate in Compose v5.6.0's
// reconcile.go). The identity is the image ID on engines that cannot
// describe an image's manifests (API < 1.48, or the classic image store);
// where they can, it is the digest of the locally available image manifest
// for the host platform, because the ID of an image stored as an index
// changes with every attestation that is added to it. lockstep writes the
// same value so that Compose finds its containers up to date.

// manifestsAPI is the first API version whose image inspect can list the
// manifests of an image (Compose's apiVersion148).
const manifestsAPI = "1.48"

// inspectImage inspects ref, with its manifests when the engine can list them.
func (e *Engine) inspectImage(ctx context.Context, ref string) (client.ImageInspectResult, error) {
	var opts []client.ImageInspectOption
	if !versions.LessThan(e.cli.ClientVersion(), manifestsAPI) {
		opts = append(opts, client.ImageInspectWithManifests(true))
	}
	return e.cli.ImageInspect(ctx, ref, opts...)
}

// composeImageDigest is the value of com.docker.compose.image for img, as
// Compose v5.6.0 computes it for a service without `platform:` (lockstep
// refuses that key): among the image manifests available locally, the first
// one for the host platform; failing that, the only one; failing that, the
// image ID.
func composeImageDigest(img image.InspectResponse) string {
	if len(img.Manifests) == 0 {
		return img.ID
	}
	var available []image.ManifestSummary
	for _, m := range img.Manifests {
		if m.Kind == image.ManifestKindImage && m.Available {
			available = append(available, m)
		}
	}
	host := platforms.Default()
	for _, m := range available {
		if m.ImageData != nil && host.Match(m.ImageData.Platform) {
			return m.ID
		}
	}
	if len(available) == 1 {
		return available[0].ID
	}
	return img.ID
}
