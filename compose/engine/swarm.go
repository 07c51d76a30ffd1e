package engine

import (
	"context"
	"errors"
	"fmt"

	"github.com/distribution/reference"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/moby/moby/client"
	"github.com/rs/zerolog"

	"github.com/lockstep-gitops/lockstep/compose"
)

// Swarm is the swarm backend's engine (reconcile/swarm.Engine): one
// manager's Engine API, read by a stack's namespace label and changed one
// object at a time. Like Engine it decides nothing and never retries.
//
// Registry credentials: a daemon keeps none of its own (they live with
// the client), so ResolveImage sends the ones lockstep's Docker config has
// for the image's registry, as docker stack deploy sends the CLI's. But
// CreateService and UpdateService send none, as docker stack deploy
// without --with-registry-auth: credentials never land in the service
// spec the swarm stores and hands to every worker, and so the nodes pull
// anonymously. A private registry needs that option's equivalent, which
// lockstep does not offer yet.
type Swarm struct {
	cli      *client.Client
	log      zerolog.Logger
	keychain authn.Keychain
}

// NewSwarm returns the Swarm on cli, the client an Engine is made from
// (Connect), pointed at a manager.
func NewSwarm(cli *client.Client, log zerolog.Logger) *Swarm {
	return &Swarm{cli: cli, log: log, keychain: authn.DefaultKeychain}
}

// ErrStaleVersion is what UpdateService returns, wrapped, when the service
// changed since the version it was given was read: read it again.
var ErrStaleVersion = errors.New("the service changed since it was read (stale version)")

// logger is what a call logs through: the logger ctx carries, else the
// Swarm's own (as Engine.logger).
func (s *Swarm) logger(ctx context.Context) *zerolog.Logger {
	if l, ok := attachedLogger(ctx); ok {
		return l
	}
	return &s.log
}

// call logs each mutating call at debug level as it begins, by the
// object's name or id, never its content.
func (s *Swarm) call(ctx context.Context, op, target string) {
	s.logger(ctx).Debug().Str("engine_call", op).Str("target", shortID(target)).Msg("engine")
}

// Info is the local node's place in the swarm: one system info, and for a
// manager the inspect of its own node, which alone says whether it leads.
func (s *Swarm) Info(ctx context.Context) (compose.SwarmInfo, error) {
	res, err := s.cli.Info(ctx, client.InfoOptions{})
	if err != nil {
		return compose.SwarmInfo{}, fmt.Errorf("read the engine's swarm state: %w", err)
	}
	sw := res.Info.Swarm
	info := compose.SwarmInfo{
		NodeID:   sw.NodeID,
		State:    string(sw.LocalNodeState),
		Manager:  sw.ControlAvailable,
		Managers: sw.Managers,
		Nodes:    sw.Nodes,
	}
	if sw.Cluster != nil {
		info.ClusterID = sw.Cluster.ID
	}
	if !info.Manager || info.NodeID == "" {
		return info, nil
	}
	node, err := s.cli.NodeInspect(ctx, info.NodeID, client.NodeInspectOptions{})
	if err != nil {
		return compose.SwarmInfo{}, fmt.Errorf("inspect this swarm node %s: %w", shortID(info.NodeID), err)
	}
	info.Leader = node.Node.ManagerStatus != nil && node.Node.ManagerStatus.Leader
	return info, nil
}

// ResolveImage returns ref pinned to the digest its registry has now
// ("repo:tag@sha256:...", a missing tag read as latest), asking the manager
// (distribution inspect) as docker stack deploy does. A reference that has
// a digest already is returned as it is, without a call.
func (s *Swarm) ResolveImage(ctx context.Context, ref string) (string, error) {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return "", fmt.Errorf("resolve image %s: not a valid image reference: %w", ref, err)
	}
	if _, ok := named.(reference.Digested); ok {
		return ref, nil
	}
	named = reference.TagNameOnly(named)
	reg := reference.Domain(named)
	auth, err := registryAuth(ctx, s.keychain, reg)
	if err != nil {
		return "", fmt.Errorf("resolve image %s: read credentials for registry %s from the Docker config: %w", ref, reg, err)
	}
	res, err := s.cli.DistributionInspect(ctx, reference.FamiliarString(named), client.DistributionInspectOptions{EncodedRegistryAuth: auth})
	if err != nil {
		return "", resolveFailed(ref, reg, err)
	}
	pinned, err := reference.WithDigest(named, res.Descriptor.Digest)
	if err != nil {
		return "", fmt.Errorf("resolve image %s: the registry gave digest %q: %w", ref, res.Descriptor.Digest, err)
	}
	return reference.FamiliarString(pinned), nil
}

// resolveFailed classifies a distribution inspect error as Pull does a
// pull's: a missing image or tag reads "image X not found in registry R"
// (errors.Is(err, cerrdefs.ErrNotFound)), a refusal "denied access".
func resolveFailed(ref, reg string, err error) error {
	var pe *PullError
	if errors.As(pullFailed(ref, reg, err), &pe) {
		pe.Resolve = true
		return pe
	}
	return fmt.Errorf("resolve the digest of image %s: %w", ref, err)
}
