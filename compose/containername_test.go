package compose

import (
	"context"
	"strings"
	"testing"
	"time"
)

// Docker Compose refuses, before it creates anything, two services that
// claim the same container_name (`docker compose up`: "container name ...
// is already in use by service ..."). lockstep refuses it when loading, so
// validate says so too.
func TestDuplicateContainerName(t *testing.T) {
	dir := writeRelease(t, map[string]string{"compose.yaml": `services:
  api:
    image: x:1
    container_name: shared-name
  web:
    image: y:1
    container_name: shared-name
  worker:
    image: z:1
    container_name: worker-name
`})
	le := loadErr(t, testOptions(dir))
	if le.File != "compose.yaml" || le.Line != 7 || le.Service != "web" || le.Key != "container_name" {
		t.Errorf("error names %s:%d service %q key %q, want compose.yaml:7, web, container_name: %v", le.File, le.Line, le.Service, le.Key, le)
	}
	assertContains(t, le.Error(), `container name "shared-name" is already in use by service api`, "container_name")
}

func TestEveryDuplicateContainerNameIsReported(t *testing.T) {
	dir := writeRelease(t, map[string]string{"compose.yaml": `services:
  a:
    image: x:1
    container_name: one-name
  b:
    image: x:1
    container_name: one-name
  c:
    image: x:1
    container_name: one-name
  d:
    image: x:1
    container_name: two-name
  e:
    image: x:1
    container_name: two-name
`})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := Load(ctx, testOptions(dir))
	if err == nil {
		t.Fatal("Load accepted duplicate container names")
	}
	for _, want := range []string{
		`compose.yaml:7: service "b": container_name: container name "one-name" is already in use by service a`,
		`compose.yaml:10: service "c": container_name: container name "one-name" is already in use by service a`,
		`compose.yaml:16: service "e": container_name: container name "two-name" is already in use by service d`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not say %q:\n%v", want, err)
		}
	}
}

func TestDistinctContainerNamesLoad(t *testing.T) {
	dir := writeRelease(t, map[string]string{"compose.yaml": `services:
  api:
    image: x:1
    container_name: api-name
  web:
    image: y:1
    container_name: web-name
    deploy:
      replicas: 1
  worker:
    image: z:1
    deploy:
      replicas: 3
`})
	p := load(t, testOptions(dir))
	if got := p.Service("web").ContainerNameFor(p.Name, 1); got != "web-name" {
		t.Errorf("web's container is named %q, want web-name", got)
	}
}

// container_name with more than one replica: compose-go refuses it while
// loading ("can't set container_name and deploy.replicas as container name
// must be unique"), as `docker compose config` does. The error must name
// the file, line, service and key, not a service called "deploy".
func TestContainerNameWithReplicas(t *testing.T) {
	tests := []struct {
		name, scale, attr string
	}{
		{"deploy.replicas", "    deploy:\n      replicas: 2\n", "deploy.replicas"},
		{"scale", "    scale: 3\n", "scale"},
		{"both", "    scale: 2\n    deploy:\n      replicas: 2\n", "scale"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeRelease(t, map[string]string{"compose.yaml": "services:\n  db:\n    image: y:1\n  web:\n    image: x:1\n    container_name: the-web\n" + tt.scale})
			le := loadErr(t, testOptions(dir))
			if le.File != "compose.yaml" || le.Line != 6 || le.Service != "web" || le.Key != "container_name" {
				t.Errorf("error names %s:%d service %q key %q, want compose.yaml:6, web, container_name: %v", le.File, le.Line, le.Service, le.Key, le)
			}
			assertContains(t, le.Error(), tt.attr, "container names must be unique", "remove container_name")
		})
	}
}
