package compose

import (
	"strings"
	"testing"
)

// Schema errors name the file, the line of the offending key, and (inside
// a service) the service and its key, wherever in the tree the key is.
func TestSchemaErrorsPointAtTheOffendingKey(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  string // the error's prefix
		file  string
		line  int
		svc   string
		key   string
	}{
		{"unknown top-level key", map[string]string{"compose.yaml": "services:\n  web:\n    image: web:1\nservice:\n  db: {}\n"},
			"compose.yaml:4: service: not a compose key", "compose.yaml", 4, "", "service"},
		{"unknown top-level keys: the first one written", map[string]string{"compose.yaml": "services:\n  web:\n    image: web:1\nzzz: 1\naaa: 2\n"},
			"compose.yaml:4: zzz: not a compose key (nor are aaa)", "compose.yaml", 4, "", "zzz"},
		{"unknown top-level key in an override file", map[string]string{
			"compose.yaml":          "services:\n  web:\n    image: web:1\n",
			"compose.override.yaml": "services:\n  web:\n    ports: [\"80:80\"]\nnetwork:\n  x: {}\n",
		}, "compose.override.yaml:4: network: not a compose key", "compose.override.yaml", 4, "", "network"},
		{"unknown key of a network", map[string]string{"compose.yaml": "services:\n  web:\n    image: web:1\nnetworks:\n  front:\n    drivr: bridge\n"},
			"compose.yaml:6: networks.front.drivr: not a compose key", "compose.yaml", 6, "", "networks.front.drivr"},
		{"unknown key of a service", map[string]string{"compose.yaml": "services:\n  web:\n    imagee: web:1\n"},
			`compose.yaml:3: service "web": imagee: not a compose key`, "compose.yaml", 3, "web", "imagee"},
		{"unknown key deep in a service", map[string]string{"compose.yaml": "services:\n  web:\n    image: web:1\n    healthcheck:\n      tst: [\"CMD\", \"true\"]\n"},
			`compose.yaml:5: service "web": healthcheck.tst: not a compose key`, "compose.yaml", 5, "web", "healthcheck.tst"},
		{"ports of the wrong type", map[string]string{"compose.yaml": "services:\n  web:\n    image: web:1\n    ports: 8080\n"},
			`compose.yaml:4: service "web": ports: must be a array`, "compose.yaml", 4, "web", "ports"},
		{"a port item of the wrong type", map[string]string{"compose.yaml": "services:\n  web:\n    image: web:1\n    ports:\n      - \"80:80\"\n      - [1]\n"},
			`compose.yaml:6: service "web": ports.1: must be a number`, "compose.yaml", 6, "web", "ports.1"},
		{"a service whose name has dots", map[string]string{"compose.yaml": "services:\n  my.web:\n    image: web:1\n    imagee: x\n"},
			`compose.yaml:4: service "my.web": imagee: not a compose key`, "compose.yaml", 4, "my.web", "imagee"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			le := loadErr(t, testOptions(writeRelease(t, tt.files)))
			if !strings.HasPrefix(le.Error(), tt.want) {
				t.Errorf("error = %q, want prefix %q", le.Error(), tt.want)
			}
			if le.File != tt.file || le.Line != tt.line || le.Service != tt.svc || le.Key != tt.key {
				t.Errorf("at %s:%d service %q key %q, want %s:%d service %q key %q", le.File, le.Line, le.Service, le.Key, tt.file, tt.line, tt.svc, tt.key)
			}
			if !le.Permanent() {
				t.Error("a schema error must be permanent")
			}
		})
	}
}
