// Package kubernetes holds the Kubernetes manifests of a replica set; its tests check them
// against each other and against the binary they run.
package kubernetes

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// object is one manifest document, decoded into the small subset the tests read.
type object struct {
	File       string
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name      string            `json:"name"`
		Namespace string            `json:"namespace"`
		Labels    map[string]string `json:"labels"`
	} `json:"metadata"`
	Spec       json.RawMessage   `json:"spec"`
	Data       map[string]string `json:"data"`
	StringData map[string]string `json:"stringData"`
	Resources  []string          `json:"resources"` // Kustomization
}

type labelSelector struct {
	MatchLabels map[string]string `json:"matchLabels"`
}

type deploymentSpec struct {
	Replicas int           `json:"replicas"`
	Selector labelSelector `json:"selector"`
	Template struct {
		Metadata struct {
			Labels map[string]string `json:"labels"`
		} `json:"metadata"`
		Spec podSpec `json:"spec"`
	} `json:"template"`
}

type podSpec struct {
	TerminationGracePeriodSeconds int `json:"terminationGracePeriodSeconds"`
	SecurityContext               struct {
		RunAsNonRoot *bool `json:"runAsNonRoot"`
		RunAsUser    *int  `json:"runAsUser"`
		FSGroup      *int  `json:"fsGroup"`
	} `json:"securityContext"`
	InitContainers []container `json:"initContainers"`
	Containers     []container `json:"containers"`
	Volumes        []volume    `json:"volumes"`
}

type container struct {
	Name    string   `json:"name"`
	Image   string   `json:"image"`
	Command []string `json:"command"`
	Args    []string `json:"args"`
	Ports   []struct {
		Name          string `json:"name"`
		ContainerPort int    `json:"containerPort"`
	} `json:"ports"`
	Env []struct {
		Name      string `json:"name"`
		Value     string `json:"value"`
		ValueFrom *struct {
			SecretKeyRef *struct {
				Name string `json:"name"`
				Key  string `json:"key"`
			} `json:"secretKeyRef"`
			ResourceFieldRef *struct {
				ContainerName string `json:"containerName"`
				Resource      string `json:"resource"`
			} `json:"resourceFieldRef"`
		} `json:"valueFrom"`
	} `json:"env"`
	Resources struct {
		Requests map[string]string `json:"requests"`
		Limits   map[string]string `json:"limits"`
	} `json:"resources"`
	StartupProbe   *probe `json:"startupProbe"`
	LivenessProbe  *probe `json:"livenessProbe"`
	ReadinessProbe *probe `json:"readinessProbe"`
	Lifecycle      struct {
		PreStop struct {
			Sleep struct {
				Seconds int `json:"seconds"`
			} `json:"sleep"`
		} `json:"preStop"`
	} `json:"lifecycle"`
	SecurityContext *struct {
		AllowPrivilegeEscalation *bool `json:"allowPrivilegeEscalation"`
		ReadOnlyRootFilesystem   *bool `json:"readOnlyRootFilesystem"`
		Capabilities             struct {
			Drop []string `json:"drop"`
		} `json:"capabilities"`
	} `json:"securityContext"`
	VolumeMounts []struct {
		Name      string `json:"name"`
		MountPath string `json:"mountPath"`
		ReadOnly  bool   `json:"readOnly"`
	} `json:"volumeMounts"`
}

type probe struct {
	HTTPGet *struct {
		Path string `json:"path"`
		Port any    `json:"port"` // a name or a number
	} `json:"httpGet"`
}

type volume struct {
	Name      string `json:"name"`
	ConfigMap *struct {
		Name  string `json:"name"`
		Items []struct {
			Key  string `json:"key"`
			Path string `json:"path"`
		} `json:"items"`
	} `json:"configMap"`
	Secret *struct {
		SecretName  string `json:"secretName"`
		DefaultMode *int   `json:"defaultMode"`
		Items       []struct {
			Key  string `json:"key"`
			Path string `json:"path"`
		} `json:"items"`
	} `json:"secret"`
	EmptyDir *struct {
		Medium string `json:"medium"`
	} `json:"emptyDir"`
}

type serviceSpec struct {
	ClusterIP string            `json:"clusterIP"`
	Selector  map[string]string `json:"selector"`
	Ports     []struct {
		Name       string `json:"name"`
		Port       int    `json:"port"`
		TargetPort any    `json:"targetPort"`
	} `json:"ports"`
}

type pdbSpec struct {
	MaxUnavailable any           `json:"maxUnavailable"`
	MinAvailable   any           `json:"minAvailable"`
	Selector       labelSelector `json:"selector"`
}

type serviceMonitorSpec struct {
	Selector  labelSelector `json:"selector"`
	Endpoints []struct {
		Port string `json:"port"`
		Path string `json:"path"`
	} `json:"endpoints"`
}

// manifests is every document of every YAML file in this directory.
type manifests struct {
	objects []object
}

func load(t *testing.T) *manifests {
	t.Helper()
	files, err := filepath.Glob("*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests here: %v", err)
	}
	m := &manifests{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range splitDocuments(string(data)) {
			var o object
			if err := yaml.UnmarshalStrict([]byte(doc), &map[string]any{}); err != nil {
				t.Fatalf("%s document %d: %v", f, i+1, err)
			}
			if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
				t.Fatalf("%s document %d: %v", f, i+1, err)
			}
			if o.Kind == "" {
				t.Fatalf("%s document %d has no kind", f, i+1)
			}
			o.File = f
			m.objects = append(m.objects, o)
		}
	}
	return m
}

// splitDocuments splits a multi-document YAML file at its "---" lines, dropping documents
// that hold only comments.
func splitDocuments(s string) []string {
	var docs []string
	for doc := range strings.SplitSeq("\n"+s, "\n---\n") {
		for line := range strings.SplitSeq(doc, "\n") {
			if t := strings.TrimSpace(line); t != "" && !strings.HasPrefix(t, "#") {
				docs = append(docs, doc)
				break
			}
		}
	}
	return docs
}

func (m *manifests) all(kind string) []object {
	var out []object
	for _, o := range m.objects {
		if o.Kind == kind {
			out = append(out, o)
		}
	}
	return out
}

func (m *manifests) one(t *testing.T, kind string) object {
	t.Helper()
	objs := m.all(kind)
	if len(objs) != 1 {
		t.Fatalf("%d objects of kind %s, want 1", len(objs), kind)
	}
	return objs[0]
}

func spec[T any](t *testing.T, o object) T {
	t.Helper()
	var s T
	if err := json.Unmarshal(o.Spec, &s); err != nil {
		t.Fatalf("%s %s (%s): decode spec: %v", o.Kind, o.Metadata.Name, o.File, err)
	}
	return s
}

func (m *manifests) deployment(t *testing.T) deploymentSpec {
	t.Helper()
	return spec[deploymentSpec](t, m.one(t, "Deployment"))
}

// processor is the apisessions container of the Deployment.
func (d deploymentSpec) processor(t *testing.T) container {
	t.Helper()
	for _, c := range d.Template.Spec.Containers {
		if c.Name == "apisessions" {
			return c
		}
	}
	t.Fatal("the Deployment has no container named apisessions")
	return container{}
}

// containerPort resolves a port given by name or number to the container's port number.
func (c container) containerPort(t *testing.T, port any) int {
	t.Helper()
	for _, p := range c.Ports {
		switch v := port.(type) {
		case string:
			if p.Name == v {
				return p.ContainerPort
			}
		case float64:
			if p.ContainerPort == int(v) {
				return p.ContainerPort
			}
		}
	}
	t.Fatalf("port %v is not a port of container %s", port, c.Name)
	return 0
}

// subset reports whether every label of sel is in labels with the same value.
func subset(sel, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func TestKustomizationListsEveryManifest(t *testing.T) {
	t.Parallel()
	m := load(t)
	k := m.one(t, "Kustomization")
	files, _ := filepath.Glob("*.yaml")
	var want []string
	for _, f := range files {
		// The example Secret stays out: applying the directory must never replace real
		// secrets with placeholders.
		if f != "kustomization.yaml" && f != "secret.example.yaml" {
			want = append(want, f)
		}
	}
	got := slices.Sorted(slices.Values(k.Resources))
	if !slices.Equal(got, want) {
		t.Errorf("kustomization resources %v, want every manifest but the example Secret: %v", got, want)
	}
	for _, kind := range []string{"Namespace", "ConfigMap", "Deployment", "Service", "PodDisruptionBudget", "ServiceMonitor", "Secret"} {
		if len(m.all(kind)) == 0 {
			t.Errorf("no %s manifest", kind)
		}
	}
	for _, o := range m.objects {
		if o.Kind != "Kustomization" && o.Metadata.Labels["app.kubernetes.io/name"] != "apisessions" {
			t.Errorf("%s %s (%s) lacks the label app.kubernetes.io/name: apisessions", o.Kind, o.Metadata.Name, o.File)
		}
	}
}

func TestSelectorsMatchThePods(t *testing.T) {
	t.Parallel()
	m := load(t)
	d := m.deployment(t)
	pods := d.Template.Metadata.Labels
	if d.Replicas < 2 {
		t.Errorf("replicas %d, want at least 2", d.Replicas)
	}
	if !subset(d.Selector.MatchLabels, pods) {
		t.Errorf("Deployment selector %v does not match its pod labels %v", d.Selector.MatchLabels, pods)
	}
	proc := d.processor(t)
	headless := false
	services := map[string]serviceSpec{}
	for _, o := range m.all("Service") {
		s := spec[serviceSpec](t, o)
		services[o.Metadata.Name] = s
		if !subset(s.Selector, pods) {
			t.Errorf("Service %s selector %v does not match the pod labels %v", o.Metadata.Name, s.Selector, pods)
		}
		for _, p := range s.Ports {
			proc.containerPort(t, p.TargetPort)
		}
		headless = headless || s.ClusterIP == "None"
	}
	if !headless {
		t.Error("no headless Service: Envoy's STRICT_DNS cluster would see one address for every replica")
	}
	pdb := spec[pdbSpec](t, m.one(t, "PodDisruptionBudget"))
	if !subset(pdb.Selector.MatchLabels, pods) {
		t.Errorf("PodDisruptionBudget selector %v does not match the pod labels", pdb.Selector.MatchLabels)
	}
	if pdb.MaxUnavailable == nil && pdb.MinAvailable == nil {
		t.Error("the PodDisruptionBudget bounds nothing")
	}
	sm := spec[serviceMonitorSpec](t, m.one(t, "ServiceMonitor"))
	scraped := 0
	for _, o := range m.all("Service") {
		if !subset(sm.Selector.MatchLabels, o.Metadata.Labels) {
			continue
		}
		scraped++
		for _, e := range sm.Endpoints {
			if !slices.ContainsFunc(services[o.Metadata.Name].Ports, func(p struct {
				Name       string `json:"name"`
				Port       int    `json:"port"`
				TargetPort any    `json:"targetPort"`
			}) bool {
				return p.Name == e.Port
			}) {
				t.Errorf("ServiceMonitor scrapes port %q, which Service %s lacks", e.Port, o.Metadata.Name)
			}
		}
	}
	if scraped != 1 {
		t.Errorf("the ServiceMonitor selects %d Services, want 1", scraped)
	}
}

func TestPodSecurity(t *testing.T) {
	t.Parallel()
	d := load(t).deployment(t)
	sc := d.Template.Spec.SecurityContext
	if sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser == 0 {
		t.Errorf("pod security context %+v, want runAsNonRoot and a non-zero runAsUser", sc)
	}
	for _, c := range append(slices.Clone(d.Template.Spec.InitContainers), d.Template.Spec.Containers...) {
		s := c.SecurityContext
		if s == nil || s.AllowPrivilegeEscalation == nil || *s.AllowPrivilegeEscalation ||
			s.ReadOnlyRootFilesystem == nil || !*s.ReadOnlyRootFilesystem || !slices.Equal(s.Capabilities.Drop, []string{"ALL"}) {
			t.Errorf("container %s: want allowPrivilegeEscalation false, readOnlyRootFilesystem true and capabilities drop [ALL]", c.Name)
		}
		if c.Resources.Limits["memory"] == "" || c.Resources.Requests["cpu"] == "" {
			t.Errorf("container %s: resources %+v, want a memory limit and a cpu request", c.Name, c.Resources)
		}
	}
	// GOMEMLIMIT would replace the memory limit apisessions derives from the container's (90 %
	// of it); set to the whole limit it would leave no room for the kernel's page cache.
	proc := d.processor(t)
	for _, e := range proc.Env {
		if e.Name == "GOMEMLIMIT" {
			t.Error("GOMEMLIMIT is set: leave it out, apisessions takes 90 % of the container's memory limit")
		}
	}
}

// TestSecretsReachTheContainer: every secret the pod reads exists in the example Secret, the
// files apisessions opens are copied with an owner-only mode to a memory volume, and the
// placeholders are values apisessions refuses, so the example cannot run by mistake.
func TestSecretsReachTheContainer(t *testing.T) {
	t.Parallel()
	m := load(t)
	secret := m.one(t, "Secret")
	d := m.deployment(t)
	proc := d.processor(t)
	for _, e := range proc.Env {
		if r := e.ValueFrom; r != nil && r.SecretKeyRef != nil {
			if r.SecretKeyRef.Name != secret.Metadata.Name {
				t.Errorf("env %s reads Secret %q; the manifests define %q", e.Name, r.SecretKeyRef.Name, secret.Metadata.Name)
			}
			if _, ok := secret.StringData[r.SecretKeyRef.Key]; !ok {
				t.Errorf("env %s reads key %q, which the Secret lacks", e.Name, r.SecretKeyRef.Key)
			}
		}
	}
	copied := secretFiles(t, d, secret)
	cfg := configText(t, m)
	for _, path := range secretPaths(cfg) {
		name := filepath.Base(path)
		if !slices.Contains(copied, name) {
			t.Errorf("the configuration reads %s, which the pod never writes", path)
		}
		if !mountedAt(proc, "secret-files", filepath.Dir(path)) {
			t.Errorf("the configuration reads %s, but the secret-files volume is not mounted at %s", path, filepath.Dir(path))
		}
	}
	checkPlaceholdersRefused(t, secret)
}

// secretFiles checks the Secret volume and the copy step and returns the copied file names.
func secretFiles(t *testing.T, d deploymentSpec, secret object) []string {
	t.Helper()
	var names []string
	memory := false
	for _, v := range d.Template.Spec.Volumes {
		switch {
		case v.Secret != nil:
			if v.Secret.SecretName != secret.Metadata.Name {
				t.Errorf("volume %s mounts Secret %q; the manifests define %q", v.Name, v.Secret.SecretName, secret.Metadata.Name)
			}
			if v.Secret.DefaultMode == nil || *v.Secret.DefaultMode&0o007 != 0 {
				t.Errorf("volume %s: defaultMode %v lets other users read the secrets", v.Name, v.Secret.DefaultMode)
			}
			for _, it := range v.Secret.Items {
				if _, ok := secret.StringData[it.Key]; !ok {
					t.Errorf("volume %s projects key %q, which the Secret lacks", v.Name, it.Key)
				}
				names = append(names, it.Path)
			}
		case v.Name == "secret-files":
			memory = v.EmptyDir != nil && v.EmptyDir.Medium == "Memory"
		}
	}
	if !memory {
		t.Error("the secret-files volume is not a memory-backed emptyDir: copied secrets would reach the node's disk")
	}
	if len(d.Template.Spec.InitContainers) != 1 {
		t.Fatalf("%d init containers, want the one that copies the secret files", len(d.Template.Spec.InitContainers))
	}
	script := strings.Join(d.Template.Spec.InitContainers[0].Command, " ")
	for _, n := range names {
		if !strings.Contains(script, n) {
			t.Errorf("the copy step never copies %s", n)
		}
	}
	if !strings.Contains(script, "chmod 0400") {
		t.Error("the copy step does not make the files owner-only (apisessions refuses others)")
	}
	return names
}

// secretPaths lists the files under /run/apisessions/secrets that a configuration names.
func secretPaths(cfg string) []string {
	var out []string
	for line := range strings.SplitSeq(cfg, "\n") {
		if _, v, ok := strings.Cut(line, ": "); ok && strings.HasPrefix(strings.TrimSpace(v), "/run/apisessions/secrets/") {
			out = append(out, strings.TrimSpace(v))
		}
	}
	return out
}

func mountedAt(c container, volume, path string) bool {
	for _, vm := range c.VolumeMounts {
		if vm.Name == volume && vm.MountPath == path {
			return true
		}
	}
	return false
}

// configText is the apisessions configuration of the ConfigMap, checked to be the file the
// container is told to read.
func configText(t *testing.T, m *manifests) string {
	t.Helper()
	cm := m.one(t, "ConfigMap")
	d := m.deployment(t)
	proc := d.processor(t)
	var cfgPath string
	for i, a := range proc.Args {
		if a == "--config" && i+1 < len(proc.Args) {
			cfgPath = proc.Args[i+1]
		}
	}
	for _, v := range d.Template.Spec.Volumes {
		if v.ConfigMap == nil || v.ConfigMap.Name != cm.Metadata.Name {
			continue
		}
		for _, it := range v.ConfigMap.Items {
			if mountedAt(proc, v.Name, filepath.Dir(cfgPath)) && it.Path == filepath.Base(cfgPath) {
				text, ok := cm.Data[it.Key]
				if !ok {
					t.Fatalf("ConfigMap %s has no key %s", cm.Metadata.Name, it.Key)
				}
				return text
			}
		}
	}
	t.Fatalf("the container reads --config %q, which no ConfigMap volume provides", cfgPath)
	return ""
}

// portOf returns the port of a HOST:PORT listen address in a configuration map.
func portOf(t *testing.T, server map[string]any, key string) string {
	t.Helper()
	addr, _ := server[key].(string)
	i := strings.LastIndex(addr, ":")
	if i < 0 {
		t.Fatalf("server.%s %q has no port", key, addr)
	}
	return addr[i+1:]
}

// listenPorts maps the container ports the configuration listens on to their config keys.
func listenPorts(t *testing.T, cfg string) map[string]string {
	t.Helper()
	var doc struct {
		Server map[string]any `json:"server"`
	}
	if err := yaml.Unmarshal([]byte(cfg), &doc); err != nil {
		t.Fatalf("parse the ConfigMap's configuration: %v", err)
	}
	out := map[string]string{}
	for _, key := range []string{"grpc_listen", "http_listen", "metrics_listen"} {
		out[portOf(t, doc.Server, key)] = key
	}
	return out
}

func TestConfigListensOnTheContainerPorts(t *testing.T) {
	t.Parallel()
	m := load(t)
	proc := m.deployment(t).processor(t)
	ports := listenPorts(t, configText(t, m))
	want := map[string]string{"grpc": "grpc_listen", "http": "http_listen", "metrics": "metrics_listen"}
	for name, key := range want {
		port := fmt.Sprint(proc.containerPort(t, name))
		if ports[port] != key {
			t.Errorf("container port %s (%s) is not where server.%s listens (%v)", name, port, key, ports)
		}
	}
	if got := slices.Sorted(maps.Values(ports)); len(got) != len(want) {
		t.Errorf("listeners %v, want three distinct ports", got)
	}
}

// TestKustomizeBuilds renders the directory with kubectl's kustomize when kubectl is
// installed: every object lands in one namespace.
func TestKustomizeBuilds(t *testing.T) {
	t.Parallel()
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl is not installed: skipping kubectl kustomize")
	}
	out, err := exec.Command(kubectl, "kustomize", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl kustomize: %v\n%s", err, out)
	}
	docs := splitDocuments(string(out))
	if want := len(load(t).objects) - 2; len(docs) != want { // neither the Kustomization nor the example Secret
		t.Errorf("kustomize rendered %d objects, want %d", len(docs), want)
	}
	for _, doc := range docs {
		var o object
		if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
			t.Fatal(err)
		}
		if o.Kind != "Namespace" && o.Metadata.Namespace != "apisessions" {
			t.Errorf("%s %s rendered in namespace %q, want apisessions", o.Kind, o.Metadata.Name, o.Metadata.Namespace)
		}
	}
}
