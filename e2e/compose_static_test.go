package e2e

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/apisessions/apisessions/internal/testutil/appconfig"
)

// composeService is the part of a docker-compose service the static checks read.
type composeService struct {
	Profiles    []string          `json:"profiles"`
	Image       string            `json:"image"`
	Build       any               `json:"build"`
	Environment map[string]string `json:"environment"`
	Volumes     []string          `json:"volumes"`
	Ports       []string          `json:"ports"`
	DependsOn   any               `json:"depends_on"` // a list of names or a map of conditions
	Healthcheck any               `json:"healthcheck"`
}

type composeFile struct {
	Services map[string]composeService `json:"services"`
	Volumes  map[string]any            `json:"volumes"`
}

func loadCompose(t *testing.T) composeFile {
	t.Helper()
	data, err := os.ReadFile("docker-compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var c composeFile
	if err := yaml.Unmarshal(data, &c); err != nil {
		t.Fatalf("parse docker-compose.yaml: %v", err)
	}
	return c
}

func (s composeService) dependencies() []string {
	switch d := s.DependsOn.(type) {
	case []any:
		var out []string
		for _, v := range d {
			out = append(out, v.(string))
		}
		return out
	case map[string]any:
		return slices.Sorted(func(yield func(string) bool) {
			for k := range d {
				if !yield(k) {
					return
				}
			}
		})
	}
	return nil
}

// TestComposeServicesAndProfiles: the default stack needs nothing from a profile (keygen,
// which writes the API's write token, serves both); the replicas profile has its own Envoy, two replicas, PostgreSQL and Redis; every
// dependency, mounted file and named volume exists; every published port is on the host's
// loopback and published once.
func TestComposeServicesAndProfiles(t *testing.T) {
	t.Parallel()
	c := loadCompose(t)
	byProfile := map[string][]string{}
	for name, s := range c.Services {
		if len(s.Profiles) > 1 {
			t.Errorf("service %s is in profiles %v; keep each in one", name, s.Profiles)
		}
		byProfile[strings.Join(s.Profiles, ",")] = append(byProfile[strings.Join(s.Profiles, ",")], name)
	}
	want := map[string][]string{
		"":         {"apisessions", "demo", "envoy", "keygen"},
		"replicas": {"apisessions-1", "apisessions-2", "envoy-replicas", "postgres", "redis"},
	}
	for p, names := range byProfile {
		slices.Sort(names)
		if !slices.Equal(names, want[p]) {
			t.Errorf("profile %q has services %v, want %v", p, names, want[p])
		}
	}
	published := map[string]string{}
	for name, s := range c.Services {
		for _, dep := range s.dependencies() {
			d, ok := c.Services[dep]
			if !ok {
				t.Errorf("service %s depends on %s, which is not defined", name, dep)
			} else if len(d.Profiles) > 0 && !slices.Equal(d.Profiles, s.Profiles) {
				t.Errorf("service %s (profiles %v) depends on %s of profiles %v: it would not start without them", name, s.Profiles, dep, d.Profiles)
			}
		}
		for _, v := range s.Volumes {
			checkComposeVolume(t, c, name, v)
		}
		for _, p := range s.Ports {
			host, _, _ := strings.Cut(p, ":")
			if host != "127.0.0.1" {
				t.Errorf("service %s publishes %q beyond the host's loopback", name, p)
			}
			hostPort := strings.Join(strings.Split(p, ":")[:2], ":")
			if other, dup := published[hostPort]; dup {
				t.Errorf("services %s and %s both publish %s", name, other, hostPort)
			}
			published[hostPort] = name
		}
	}
}

func checkComposeVolume(t *testing.T, c composeFile, service, v string) {
	t.Helper()
	src, _, _ := strings.Cut(v, ":")
	if strings.HasPrefix(src, ".") {
		if _, err := os.Stat(filepath.FromSlash(src)); err != nil {
			t.Errorf("service %s mounts %s: %v", service, src, err)
		}
		return
	}
	if _, ok := c.Volumes[src]; !ok {
		t.Errorf("service %s mounts the volume %s, which the file does not declare", service, src)
	}
}

// TestComposeReplicaConfig: both replicas run apisessions-replicas.yaml with the same
// shared store, state and hash key; the file validates with the environment they get; and
// its parameters are those of apisessions.yaml, from which envoy-replicas.yaml is rendered.
func TestComposeReplicaConfig(t *testing.T) {
	c := loadCompose(t)
	r1, r2 := c.Services["apisessions-1"], c.Services["apisessions-2"]
	if !reflect.DeepEqual(r1.Environment, r2.Environment) || !slices.Equal(r1.Volumes, r2.Volumes) {
		t.Errorf("the replicas differ in environment or volumes:\n%v %v\n%v %v", r1.Environment, r1.Volumes, r2.Environment, r2.Volumes)
	}
	if !slices.Contains(r1.Volumes, "./apisessions-replicas.yaml:/etc/apisessions/apisessions.yaml:ro") {
		t.Errorf("the replicas do not run apisessions-replicas.yaml: %v", r1.Volumes)
	}
	data, err := os.ReadFile("apisessions-replicas.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range r1.Environment {
		t.Setenv(k, v)
	}
	if code, out := appconfig.Validate(t, string(data)); code != 0 {
		t.Errorf("apisessions-replicas.yaml does not validate with the replicas' environment (exit %d):\n%s", code, out)
	}
	single, err := os.ReadFile("apisessions.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var a, b struct {
		Parameters any `json:"parameters"`
	}
	if err := yaml.Unmarshal(single, &a); err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &b); err != nil {
		t.Fatal(err)
	}
	if a.Parameters == nil || !reflect.DeepEqual(a.Parameters, b.Parameters) {
		t.Error("apisessions-replicas.yaml and apisessions.yaml have different parameters; envoy-replicas.yaml is rendered from the latter")
	}
}
