package engine

import (
	"runtime"
	"testing"

	"github.com/moby/moby/api/types/image"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// TestComposeImageDigest: the identity Compose v5.6.0 records in
// com.docker.compose.image, for the shapes an image inspect takes.
func TestComposeImageDigest(t *testing.T) {
	host := ocispec.Platform{OS: "linux", Architecture: runtime.GOARCH}
	other := ocispec.Platform{OS: "linux", Architecture: "s390x"}
	if runtime.GOARCH == "s390x" {
		other.Architecture = "ppc64le"
	}
	img := func(m ...image.ManifestSummary) image.InspectResponse {
		return image.InspectResponse{ID: "sha256:index", Manifests: m}
	}
	manifest := func(id string, kind image.ManifestKind, available bool, p *ocispec.Platform) image.ManifestSummary {
		m := image.ManifestSummary{ID: id, Kind: kind, Available: available}
		if p != nil {
			m.ImageData = &image.ImageProperties{Platform: *p}
		}
		return m
	}
	tests := []struct {
		name string
		in   image.InspectResponse
		want string
	}{
		{"classic store or API < 1.48: the image ID", img(), "sha256:index"},
		{"the host platform's manifest", img(
			manifest("sha256:other", image.ManifestKindImage, true, &other),
			manifest("sha256:host", image.ManifestKindImage, true, &host),
			manifest("sha256:att", image.ManifestKindAttestation, true, nil)), "sha256:host"},
		{"a manifest not pulled does not count", img(
			manifest("sha256:host", image.ManifestKindImage, false, &host),
			manifest("sha256:other", image.ManifestKindImage, true, &other)), "sha256:other"},
		{"the only manifest, whatever its platform data", img(
			manifest("sha256:only", image.ManifestKindImage, true, nil)), "sha256:only"},
		{"several, none for the host: the image ID", img(
			manifest("sha256:a", image.ManifestKindImage, true, &other),
			manifest("sha256:b", image.ManifestKindImage, true, nil)), "sha256:index"},
	}
	for _, tt := range tests {
		if got := composeImageDigest(tt.in); got != tt.want {
			t.Errorf("%s: %s, want %s", tt.name, got, tt.want)
		}
	}
}
