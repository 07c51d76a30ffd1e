package api_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/lockstep-gitops/lockstep/api"
	"github.com/lockstep-gitops/lockstep/gitsource"
)

// TestStateDirMetrics: the state dir's size by part and the number of
// releases are gauges measured at scrape time; a failed measure fails
// only those, not the scrape.
func TestStateDirMetrics(t *testing.T) {
	m := api.NewMetrics(nil)
	var err error
	m.MeasureStateDir(func(context.Context) (gitsource.DiskUsage, error) {
		return gitsource.DiskUsage{GitBytes: 100, ReleasesBytes: 300, Releases: 2, OtherBytes: 4}, err
	})
	expected := `
# HELP lockstep_releases Release directories in the state dir (in use, kept for a rollback, or not pruned yet).
# TYPE lockstep_releases gauge
lockstep_releases 2
# HELP lockstep_state_dir_bytes Bytes the state dir takes on disk (allocated blocks, a hard-linked file once), by part: git (the cache), releases, other.
# TYPE lockstep_state_dir_bytes gauge
lockstep_state_dir_bytes{part="git"} 100
lockstep_state_dir_bytes{part="other"} 4
lockstep_state_dir_bytes{part="releases"} 300
`
	if e := testutil.GatherAndCompare(m.Gatherer(), strings.NewReader(expected), "lockstep_state_dir_bytes", "lockstep_releases"); e != nil {
		t.Error(e)
	}
	err = errors.New("walk: permission denied")
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if !strings.Contains(rec.Body.String(), "go_build_info") || strings.Contains(rec.Body.String(), "lockstep_state_dir_bytes{") {
		t.Errorf("scrape with a failed measure: %d\n%s", rec.Code, rec.Body.String())
	}
}
