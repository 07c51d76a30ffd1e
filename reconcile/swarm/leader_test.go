package swarm

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/lockstep-gitops/lockstep/compose"
)

func TestCanApply(t *testing.T) {
	tests := []struct {
		name   string
		info   Info
		want   bool
		reason string
	}{
		{"leader", Info{NodeID: "m1", State: "active", Manager: true, Leader: true}, true, ""},
		{"manager, not leader", Info{NodeID: "m2", State: "active", Manager: true}, false, "this node (m2) is a manager but not the leader"},
		{"worker", Info{NodeID: "w1", State: "active"}, false, "this node is a worker"},
		{"not in a swarm", Info{State: "inactive"}, false, "not an active member of a swarm (state inactive)"},
		{"locked", Info{State: "locked", Manager: true, Leader: true}, false, "(state locked)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, _ := newSwarm()
			f.info = tt.info
			ok, reason, err := CanApply(context.Background(), f)
			if err != nil || ok != tt.want || !strings.Contains(reason, tt.reason) || (tt.reason == "") != (reason == "") {
				t.Errorf("CanApply = %t, %q, %v; want %t, %q", ok, reason, err, tt.want, tt.reason)
			}
		})
	}
}

type infoErr struct{ *fakeSwarm }

func (infoErr) Info(context.Context) (Info, error) { return Info{}, errors.New("connection refused") }

func TestCanApplyEngineError(t *testing.T) {
	f, _ := newSwarm()
	if ok, _, err := CanApply(context.Background(), infoErr{f}); ok || err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("CanApply = %t, %v; want the engine's error", ok, err)
	}
}

func TestNotLeaderReason(t *testing.T) {
	nodes := []compose.ObservedNode{{Hostname: "m1", Role: "manager"}, {Hostname: "m3", Role: "manager", Leader: true}}
	if got := NotLeaderReason(nodes); got != "this node is a manager but not the leader (leader: node m3)" {
		t.Errorf("NotLeaderReason = %q", got)
	}
	if got := NotLeaderReason(nil); !strings.Contains(got, "no leader known") {
		t.Errorf("NotLeaderReason(none) = %q", got)
	}
}
