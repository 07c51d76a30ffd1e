package api

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lockstep-gitops/lockstep/gitsource"
)

// A state dir that fills its disk stops every deploy, so its size is a
// metric (alert on it) and not only a line of `lockstep status`.

var (
	stateDirBytesDesc = prometheus.NewDesc("lockstep_state_dir_bytes",
		"Bytes the state dir takes on disk (allocated blocks, a hard-linked file once), by part: git (the cache), releases, other.",
		[]string{"part"}, nil)
	releasesDesc = prometheus.NewDesc("lockstep_releases",
		"Release directories in the state dir (in use, kept for a rollback, or not pruned yet).",
		nil, nil)
)

// MeasureStateDir adds the state dir gauges, measured by measure at each
// scrape (a walk of the state dir, bounded by diskUsageTimeout).
func (m *Metrics) MeasureStateDir(measure func(ctx context.Context) (gitsource.DiskUsage, error)) {
	m.registry.MustRegister(&diskCollector{measure: measure})
}

type diskCollector struct {
	measure func(ctx context.Context) (gitsource.DiskUsage, error)
}

func (c *diskCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- stateDirBytesDesc
	ch <- releasesDesc
}

func (c *diskCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), diskUsageTimeout)
	defer cancel()
	u, err := c.measure(ctx)
	if err != nil {
		// Served as a scrape error; the other metrics are still served
		// (ContinueOnError).
		ch <- prometheus.NewInvalidMetric(stateDirBytesDesc, err)
		return
	}
	for part, n := range map[string]int64{"git": u.GitBytes, "releases": u.ReleasesBytes, "other": u.OtherBytes} {
		ch <- prometheus.MustNewConstMetric(stateDirBytesDesc, prometheus.GaugeValue, float64(n), part)
	}
	ch <- prometheus.MustNewConstMetric(releasesDesc, prometheus.GaugeValue, float64(u.Releases))
}
