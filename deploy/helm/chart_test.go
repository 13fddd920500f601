// Package helm holds the test of Herald's Helm chart (deploy/helm/herald):
// it renders the chart with the helm CLI that `make test` builds into ./bin
// and checks the manifests a cluster would receive.
package helm

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

const chartDir = "herald"

// helmBin is ./bin/helm (make helm) or HERALD_HELM.
func helmBin(t *testing.T) string {
	t.Helper()
	p := os.Getenv("HERALD_HELM")
	if p == "" {
		p, _ = filepath.Abs("../../bin/helm")
	}
	if _, err := os.Stat(p); err != nil {
		t.Skipf("the helm CLI is not at %s: run `make helm` (make test builds it) or set HERALD_HELM", p)
	}
	return p
}

// required are the values an install must set when it brings no Secret.
var required = []string{
	"--set", "database.url=postgres://herald:secret@postgres:5432/herald?sslmode=require",
	"--set", `keys.eventKeys=key-1\,key-2`,
	"--set", "keys.signingKey=signing-secret",
}

func helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(helmBin(t), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return stdout.String(), errors.New(stderr.String())
	}
	return stdout.String(), nil
}

// manifest is one rendered object, decoded generically.
type manifest map[string]any

func (m manifest) kind() string { return m["kind"].(string) }
func (m manifest) name() string { return get(m, "metadata", "name").(string) }

// get walks maps by key and lists by index (an int).
func get(v any, path ...any) any {
	if m, ok := v.(manifest); ok {
		v = map[string]any(m)
	}
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

// render runs helm template as release "rel" and returns the objects by
// "Kind/name".
func render(t *testing.T, args ...string) map[string]manifest {
	t.Helper()
	out, err := helm(t, append([]string{"template", "rel", chartDir}, args...)...)
	require.NoError(t, err)
	objs := map[string]manifest{}
	dec := yaml.NewDecoder(strings.NewReader(out))
	for {
		// Decoded as a plain map: nested maps are then map[string]any too.
		var raw map[string]any
		err := dec.Decode(&raw)
		m := manifest(raw)
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		if m == nil || m["kind"] == nil {
			continue // a template that rendered nothing but comments
		}
		objs[m.kind()+"/"+m.name()] = m
	}
	return objs
}

// container returns the first container of a workload's pod template.
func container(t *testing.T, m manifest) map[string]any {
	t.Helper()
	c, ok := get(m, "spec", "template", "spec", "containers", 0).(map[string]any)
	require.Truef(t, ok, "%s/%s has no container", m.kind(), m.name())
	return c
}

// envOf maps a container's variables to their value, or to
// "secret:<name>/<key>" for a secretKeyRef.
func envOf(c map[string]any) map[string]string {
	out := map[string]string{}
	list, _ := c["env"].([]any)
	for _, e := range list {
		name, _ := get(e, "name").(string)
		if v, ok := get(e, "value").(string); ok {
			out[name] = v
			continue
		}
		if ref := get(e, "valueFrom", "secretKeyRef"); ref != nil {
			out[name] = "secret:" + get(ref, "name").(string) + "/" + get(ref, "key").(string)
		}
	}
	return out
}

func TestLint(t *testing.T) {
	out, err := helm(t, append([]string{"lint", "--strict", chartDir}, required...)...)
	require.NoError(t, err, out)
}

func TestRenderedManifests(t *testing.T) {
	objs := render(t, append(required,
		"--set", "image.repository=registry.example/herald",
		"--set", "image.tag=1.2.3",
		"--set", "replicaCount=3",
		"--set", "temporal.address=temporal-frontend.temporal:7233",
		"--set", "temporal.namespace=herald",
		"--set", "env.HERALD_RETENTION=48h",
		"--set", "resources.requests.cpu=2",
		"--set", "resources.limits.memory=1Gi",
	)...)
	kinds := make([]string, 0, len(objs))
	for k := range objs {
		kinds = append(kinds, k)
	}
	require.ElementsMatch(t, []string{
		"Deployment/rel-herald", "Deployment/rel-herald-example-worker", "Service/rel-herald",
		"Job/rel-herald-migrate", "Secret/rel-herald",
	}, kinds)

	const image = "registry.example/herald:1.2.3"
	secret := "secret:rel-herald/"

	// herald serve.
	dep := objs["Deployment/rel-herald"]
	require.EqualValues(t, 3, get(dep, "spec", "replicas"))
	c := container(t, dep)
	require.Equal(t, image, c["image"])
	require.Equal(t, []any{"serve"}, c["args"])
	env := envOf(c)
	require.Equal(t, map[string]string{
		"HERALD_ADDR":               ":8288",
		"HERALD_DATABASE_URL":       secret + "database-url",
		"HERALD_EVENT_KEYS":         secret + "event-keys",
		"HERALD_SIGNING_KEY":        secret + "signing-key",
		"HERALD_TEMPORAL_ADDRESS":   "temporal-frontend.temporal:7233",
		"HERALD_TEMPORAL_NAMESPACE": "herald",
		"HERALD_SYSTEM_TASK_QUEUE":  "herald-system-rel",
		"HERALD_LOG_FORMAT":         "json",
		"HERALD_RETENTION":          "48h",
	}, env)
	require.Equal(t, "/healthz", get(c, "livenessProbe", "httpGet", "path"))
	require.Equal(t, "http", get(c, "livenessProbe", "httpGet", "port"))
	require.Equal(t, "/readyz?check=store", get(c, "readinessProbe", "httpGet", "path"))
	require.Equal(t, "http", get(c, "readinessProbe", "httpGet", "port"))
	require.Equal(t, "http", get(c, "ports", 0, "name"))
	require.EqualValues(t, 8288, get(c, "ports", 0, "containerPort"))
	require.EqualValues(t, 2, get(c, "resources", "requests", "cpu"))
	require.Equal(t, "128Mi", get(c, "resources", "requests", "memory"))
	require.Equal(t, "1Gi", get(c, "resources", "limits", "memory"))
	require.Equal(t, true, get(dep, "spec", "template", "spec", "securityContext", "runAsNonRoot"))

	// The Service selects the server pods, not the worker's or the Job's.
	svc := objs["Service/rel-herald"]
	sel := get(svc, "spec", "selector").(map[string]any)
	labels := get(dep, "spec", "template", "metadata", "labels").(map[string]any)
	for k, v := range sel {
		require.Equalf(t, v, labels[k], "the Service's selector %s", k)
	}
	require.Equal(t, "server", sel["app.kubernetes.io/component"])
	require.Equal(t, "http", get(svc, "spec", "ports", 0, "targetPort"))

	// herald migrate: a hook before install and upgrade, after the Secret.
	job := objs["Job/rel-herald-migrate"]
	jc := container(t, job)
	require.Equal(t, image, jc["image"])
	require.Equal(t, []any{"migrate"}, jc["args"])
	jobEnv := envOf(jc)
	delete(env, "HERALD_ADDR")
	require.Equal(t, env, jobEnv, "herald migrate sees the database and Temporal herald serve sees")
	require.Equal(t, "pre-install,pre-upgrade", get(job, "metadata", "annotations", "helm.sh/hook"))
	require.NotNil(t, get(jc, "resources", "limits", "memory"))
	sec := objs["Secret/rel-herald"]
	require.Equal(t, "pre-install,pre-upgrade", get(sec, "metadata", "annotations", "helm.sh/hook"))
	require.Equal(t, "-10", get(sec, "metadata", "annotations", "helm.sh/hook-weight"), "the Secret exists before the Job runs")
	require.Equal(t, "postgres://herald:secret@postgres:5432/herald?sslmode=require", get(sec, "stringData", "database-url"))
	require.Equal(t, "key-1,key-2", get(sec, "stringData", "event-keys"))

	// The example worker reaches Herald through the Service.
	w := container(t, objs["Deployment/rel-herald-example-worker"])
	require.Equal(t, image, w["image"])
	require.Equal(t, []any{"/usr/local/bin/herald-demo"}, w["command"])
	require.Equal(t, map[string]string{
		"HERALD_URL":         "http://rel-herald:8288",
		"HERALD_SIGNING_KEY": secret + "signing-key",
		"TEMPORAL_ADDRESS":   "temporal-frontend.temporal:7233",
		"TEMPORAL_NAMESPACE": "herald",
	}, envOf(w))
	require.NotContains(t, envOf(w), "HERALD_DATABASE_URL", "a worker never needs the database")
}

func TestDefaultsUseTheChartVersion(t *testing.T) {
	objs := render(t, required...)
	c := container(t, objs["Deployment/rel-herald"])
	require.Equal(t, "herald:0.1.0", c["image"], "the image tag defaults to the chart's appVersion")
	require.EqualValues(t, 2, get(objs["Deployment/rel-herald"], "spec", "replicas"))
	require.Equal(t, "500m", get(c, "resources", "requests", "cpu"))
	require.Equal(t, "512Mi", get(c, "resources", "limits", "memory"))
}

func TestExistingSecret(t *testing.T) {
	objs := render(t, "--set", "existingSecret=herald-prod", "--set", "exampleWorker.enabled=false", "--set", "migrations.enabled=false")
	require.NotContains(t, objs, "Secret/rel-herald", "no Secret is created with existingSecret")
	require.NotContains(t, objs, "Deployment/rel-herald-example-worker")
	require.NotContains(t, objs, "Job/rel-herald-migrate")
	env := envOf(container(t, objs["Deployment/rel-herald"]))
	require.Equal(t, "secret:herald-prod/database-url", env["HERALD_DATABASE_URL"])
	require.Equal(t, "secret:herald-prod/signing-key", env["HERALD_SIGNING_KEY"])
}

func TestMissingValuesFail(t *testing.T) {
	_, err := helm(t, "template", "rel", chartDir, "--set", "keys.eventKeys=k", "--set", "keys.signingKey=s")
	require.Error(t, err)
	require.Contains(t, err.Error(), "database.url is required")
}
