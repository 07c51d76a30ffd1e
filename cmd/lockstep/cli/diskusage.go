package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/lockstep-gitops/lockstep/gitsource"
)

// writeDiskUsage prints what the state dir takes on disk, after validate's
// environments: the one place an operator checks a host before trusting
// it with a deploy, and where a state dir that grows shows first. A
// failure to measure is a warning, not a failed validate.
func (c *cli) writeDiskUsage(ctx context.Context, stateDir string) {
	if _, err := os.Stat(stateDir); errors.Is(err, fs.ErrNotExist) {
		fmt.Fprintf(c.stdout, "state dir %s: not created yet\n", stateDir)
		return
	}
	u, err := gitsource.MeasureDiskUsage(ctx, stateDir)
	if err != nil {
		fmt.Fprintf(c.stderr, "lockstep: %v\n", err)
		return
	}
	fmt.Fprintf(c.stdout, "state dir %s: %s\n", stateDir, diskUsageText(u))
}

// diskUsageText is u for validate and status.
func diskUsageText(u gitsource.DiskUsage) string {
	return fmt.Sprintf("%s on disk (git cache %s, %d %s %s, other %s)",
		sizeText(u.TotalBytes()), sizeText(u.GitBytes),
		u.Releases, plural(u.Releases, "release", "releases"), sizeText(u.ReleasesBytes), sizeText(u.OtherBytes))
}

// sizeText is n bytes in binary units, one decimal from KiB up.
func sizeText(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, i := float64(n)/unit, 0
	for ; v >= unit && i < 4; i++ {
		v /= unit
	}
	return fmt.Sprintf("%.1f %ciB", v, "KMGTP"[i])
}
