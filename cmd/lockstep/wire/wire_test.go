package wire

import (
	"reflect"
	"testing"

	"github.com/lockstep-gitops/lockstep/config"
)

// TestPolicyWiring: every [policy] setting reaches the runner's policy.
func TestPolicyWiring(t *testing.T) {
	in := config.Policy{
		Mode: config.PolicyEnforce, AllowPrivileged: true, AllowHostNetwork: true, AllowHostPID: true,
		AllowHostIPC: true, AllowCapabilities: []string{"NET_ADMIN"}, AllowDevices: true,
		AllowDockerSocket: true, AllowedBindRoots: []string{"/srv"},
	}
	out := Policy(in)
	iv, ov := reflect.ValueOf(in), reflect.ValueOf(out)
	if iv.NumField() != ov.NumField() {
		t.Fatalf("config.Policy has %d fields, compose.Policy %d: wire the new one", iv.NumField(), ov.NumField())
	}
	for i := range iv.NumField() {
		name := iv.Type().Field(i).Name
		of := ov.FieldByName(name)
		if !of.IsValid() || !reflect.DeepEqual(of.Interface(), iv.Field(i).Interface()) {
			t.Errorf("%s not wired: config %v, runner %v", name, iv.Field(i), of)
		}
	}
}
