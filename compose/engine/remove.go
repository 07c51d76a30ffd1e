package engine

import (
	"context"
	"fmt"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/lockstep-gitops/lockstep/compose"
)

// RemoveNetwork removes a project network by name; one already gone is
// what was asked for. Only a teardown asks (reconcile.TeardownPlan).
func (e *Engine) RemoveNetwork(ctx context.Context, name string) error {
	e.call(ctx, "remove-network", name)
	if _, err := e.cli.NetworkRemove(ctx, name, client.NetworkRemoveOptions{}); err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("remove network %s: %w", name, err)
	}
	return nil
}

// RemoveVolume removes a named volume of the project, and its data with
// it; one already gone is what was asked for. Only the teardown of an
// environment whose set says remove_volumes asks: no other path of
// lockstep removes a volume.
func (e *Engine) RemoveVolume(ctx context.Context, name string) error {
	e.call(ctx, "remove-volume", name)
	if _, err := e.cli.VolumeRemove(ctx, name, client.VolumeRemoveOptions{}); err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("remove volume %s: %w", name, err)
	}
	return nil
}

// Environments lists the lockstep environments with containers on the
// engine, each with its compose project: one container list by label.
func (e *Engine) Environments(ctx context.Context) (map[string]string, error) {
	list, err := e.cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: make(client.Filters).Add("label", compose.LabelEnvironment)})
	if err != nil {
		return nil, fmt.Errorf("list the environments on the engine: %w", err)
	}
	out := map[string]string{}
	for _, c := range list.Items {
		if env, project := c.Labels[compose.LabelEnvironment], c.Labels[compose.LabelProject]; env != "" && project != "" {
			out[env] = project
		}
	}
	return out, nil
}
