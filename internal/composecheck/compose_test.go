package composecheck

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/stretchr/testify/require"
)

// repoRoot is where docker-compose.yml, Dockerfile and .dockerignore live,
// relative to this package's directory (go test runs in it).
const repoRoot = "../.."

// Service names, spelled once.
const (
	svcPostgres       = "postgres"
	svcTemporalSchema = "temporal-schema"
	svcTemporal       = "temporal"
	svcNamespace      = "temporal-namespace"
	svcTemporalUI     = "temporal-ui"
	svcHeraldMigrate  = "herald-migrate"
	svcHerald         = "herald"
	svcWorker         = "worker"
)

// heraldImageServices run the image built from the repository's Dockerfile.
var heraldImageServices = []string{svcHeraldMigrate, svcHerald, svcWorker}

// oneShotServices are jobs others wait on with service_completed_successfully.
var oneShotServices = []string{svcTemporalSchema, svcNamespace, svcHeraldMigrate}

// loadProject parses docker-compose.yml once, the way `docker compose` does
// (interpolation, normalization, consistency checks), but with an empty,
// deterministic environment instead of the OS one and without a .env file, so
// the defaults written in the file are what gets tested. Nothing here talks to
// a Docker engine: build contexts are only resolved to absolute paths.
var loadProject = sync.OnceValues(func() (*types.Project, error) {
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		return nil, err
	}
	opts, err := cli.NewProjectOptions(
		[]string{filepath.Join(root, "docker-compose.yml")},
		cli.WithWorkingDirectory(root),
		cli.WithEnv(nil),
		cli.WithInterpolation(true),
		cli.WithNormalization(true),
		cli.WithConsistency(true),
		cli.WithResolvedPaths(true),
	)
	if err != nil {
		return nil, err
	}
	return opts.LoadProject(context.Background())
})

func project(t *testing.T) *types.Project {
	t.Helper()
	p, err := loadProject()
	require.NoError(t, err, "docker-compose.yml must load with the compose-spec loader")
	return p
}

func service(t *testing.T, name string) types.ServiceConfig {
	t.Helper()
	s, ok := project(t).Services[name]
	require.Truef(t, ok, "service %q missing from docker-compose.yml", name)
	return s
}

// env returns a service's environment with every variable required to have a value.
func env(t *testing.T, s types.ServiceConfig) map[string]string {
	t.Helper()
	out := make(map[string]string, len(s.Environment))
	for k, v := range s.Environment {
		require.NotNilf(t, v, "service %q: environment variable %s has no value", s.Name, k)
		out[k] = *v
	}
	return out
}

// script joins a service's entrypoint and command into one string, with runs
// of whitespace (including the script's newlines) collapsed to single spaces.
func script(s types.ServiceConfig) string {
	all := append(slices.Clone([]string(s.Entrypoint)), s.Command...)
	return strings.Join(strings.Fields(strings.Join(all, " ")), " ")
}

func readRepoFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, name))
	require.NoErrorf(t, err, "%s must exist at the repository root", name)
	return string(b)
}

func TestProjectName(t *testing.T) {
	t.Parallel()
	require.Equal(t, "herald", project(t).Name, "containers and volumes are prefixed with the project name")
}

func TestServiceNames(t *testing.T) {
	t.Parallel()
	want := []string{
		svcHerald, svcHeraldMigrate, svcPostgres, svcTemporal,
		svcNamespace, svcTemporalSchema, svcTemporalUI, svcWorker,
	}
	got := project(t).ServiceNames()
	slices.Sort(want)
	slices.Sort(got)
	require.Equal(t, want, got)
}

func TestPublishedPorts(t *testing.T) {
	t.Parallel()
	type port struct {
		published string
		target    uint32
	}
	want := map[string][]port{
		svcHerald:     {{"8288", 8288}},
		svcTemporal:   {{"7233", 7233}},
		svcTemporalUI: {{"8233", 8080}},
	}
	for name, s := range project(t).Services {
		var got []port
		for _, p := range s.Ports {
			got = append(got, port{p.Published, p.Target})
		}
		require.Equalf(t, want[name], got, "published ports of service %q", name)
	}
}

func TestDependsOn(t *testing.T) {
	t.Parallel()
	const (
		healthy   = types.ServiceConditionHealthy
		completed = types.ServiceConditionCompletedSuccessfully
		started   = types.ServiceConditionStarted
	)
	want := map[string]map[string]string{
		svcPostgres:       {},
		svcTemporalSchema: {svcPostgres: healthy},
		svcTemporal:       {svcTemporalSchema: completed},
		svcNamespace:      {svcTemporal: healthy},
		svcTemporalUI:     {svcTemporal: healthy},
		svcHeraldMigrate:  {svcPostgres: healthy, svcNamespace: completed},
		svcHerald:         {svcHeraldMigrate: completed, svcTemporal: healthy},
		svcWorker:         {svcHerald: started, svcNamespace: completed},
	}
	p := project(t)
	for name, s := range p.Services {
		got := map[string]string{}
		for dep, d := range s.DependsOn {
			got[dep] = d.Condition
			require.Truef(t, d.Required, "%s -> %s must be a required dependency", name, dep)
		}
		require.Equalf(t, want[name], got, "depends_on of service %q", name)
	}

	// A service_healthy condition is only satisfiable if the target has a healthcheck.
	for name, s := range p.Services {
		for dep, d := range s.DependsOn {
			if d.Condition != healthy {
				continue
			}
			hc := p.Services[dep].HealthCheck
			require.Truef(t, hc != nil && !hc.Disable && len(hc.Test) > 0,
				"%s waits for %s to be healthy, but %s has no healthcheck", name, dep, dep)
		}
	}
}

func TestOneShotJobsTerminate(t *testing.T) {
	t.Parallel()
	// A job that others wait on with service_completed_successfully must exit:
	// "always"/"unless-stopped" would restart it forever and block start-up.
	for _, name := range oneShotServices {
		r := service(t, name).Restart
		require.Truef(t, r == "" || r == types.RestartPolicyNo || strings.HasPrefix(r, types.RestartPolicyOnFailure),
			"one-shot service %q has restart policy %q", name, r)
	}
}

func TestHeraldEnvironment(t *testing.T) {
	t.Parallel()
	pg := env(t, service(t, svcPostgres))

	for _, name := range []string{svcHerald, svcHeraldMigrate} {
		e := env(t, service(t, name))

		u, err := url.Parse(e["HERALD_DATABASE_URL"])
		require.NoError(t, err)
		require.Equal(t, "postgres", u.Scheme, name)
		require.Equal(t, svcPostgres, u.Hostname(), "%s must reach the postgres service", name)
		require.Equal(t, "5432", u.Port(), name)
		require.Equal(t, pg["POSTGRES_USER"], u.User.Username(), name)
		pw, _ := u.User.Password()
		require.Equal(t, pg["POSTGRES_PASSWORD"], pw, name)
		require.Equal(t, "/"+pg["POSTGRES_DB"], u.Path, name)
		require.Equal(t, "disable", u.Query().Get("sslmode"), name)

		require.Equal(t, "temporal:7233", e["HERALD_TEMPORAL_ADDRESS"], name)
		require.Equal(t, "default", e["HERALD_TEMPORAL_NAMESPACE"], name)
		require.Equal(t, ":8288", e["HERALD_ADDR"], name)
		// With no environment given, the dev defaults apply.
		require.Equal(t, "dev-event-key", e["HERALD_EVENT_KEYS"], name)
		require.Equal(t, "dev-signing-key", e["HERALD_SIGNING_KEY"], name)
	}

	require.Equal(t, []string{"serve"}, []string(service(t, svcHerald).Command))
	require.Equal(t, []string{"migrate"}, []string(service(t, svcHeraldMigrate).Command))
}

func TestEnvironmentOverrides(t *testing.T) {
	t.Parallel()
	root, err := filepath.Abs(repoRoot)
	require.NoError(t, err)
	opts, err := cli.NewProjectOptions(
		[]string{filepath.Join(root, "docker-compose.yml")},
		cli.WithWorkingDirectory(root),
		cli.WithEnv([]string{"HERALD_EVENT_KEYS=k1,k2", "HERALD_SIGNING_KEY=s3cret"}),
	)
	require.NoError(t, err)
	p, err := opts.LoadProject(context.Background())
	require.NoError(t, err)
	for _, name := range []string{svcHerald, svcHeraldMigrate, svcWorker} {
		e := env(t, p.Services[name])
		require.Equalf(t, "s3cret", e["HERALD_SIGNING_KEY"], "%s must take HERALD_SIGNING_KEY from the environment", name)
	}
	require.Equal(t, "k1,k2", env(t, p.Services[svcHerald])["HERALD_EVENT_KEYS"])
}

func TestWorker(t *testing.T) {
	t.Parallel()
	w := service(t, svcWorker)
	require.Equal(t, []string{"/usr/local/bin/herald-demo"}, []string(w.Entrypoint))
	require.Empty(t, w.Command, "the worker must not be passed herald's `serve` argument")

	e := env(t, w)
	u, err := url.Parse(e["HERALD_URL"])
	require.NoError(t, err)
	require.Equal(t, svcHerald, u.Hostname(), "HERALD_URL must point at the herald service")
	require.Equal(t, "8288", u.Port(), "HERALD_URL must use herald's container port")
	require.Equal(t, "temporal:7233", e["TEMPORAL_ADDRESS"])
	require.Equal(t, env(t, service(t, svcHerald))["HERALD_SIGNING_KEY"], e["HERALD_SIGNING_KEY"],
		"worker and herald must share the signing key")
}

func TestHeraldImageBuiltFromRepoDockerfile(t *testing.T) {
	t.Parallel()
	root, err := filepath.Abs(repoRoot)
	require.NoError(t, err)

	var images []string
	for _, name := range heraldImageServices {
		s := service(t, name)
		require.NotNilf(t, s.Build, "service %q must be built from the repository", name)
		require.Equal(t, root, s.Build.Context, "build context of %q", name)
		require.Equal(t, "Dockerfile", s.Build.Dockerfile, "dockerfile of %q", name)
		images = append(images, s.Image)
	}
	require.NotEmpty(t, images[0])
	for _, img := range images {
		require.Equal(t, images[0], img, "herald-migrate, herald and worker must run the same image")
	}
	// Only Herald's services are built locally; the rest are pulled.
	for name, s := range project(t).Services {
		if !slices.Contains(heraldImageServices, name) {
			require.Nilf(t, s.Build, "service %q should use a published image", name)
		}
	}
}

func TestDockerfile(t *testing.T) {
	t.Parallel()
	df := readRepoFile(t, "Dockerfile")
	// Join continuation lines so each instruction is one line.
	df = strings.ReplaceAll(df, "\\\n", " ")

	froms := regexp.MustCompile(`(?m)^FROM\s+(?:--platform=\S+\s+)?(\S+)`).FindAllStringSubmatch(df, -1)
	require.Len(t, froms, 2, "multi-stage build: a builder and a runtime stage")
	require.True(t, strings.HasPrefix(froms[0][1], "golang:1.26"), "builder stage is %s", froms[0][1])
	require.Contains(t, []string{"gcr.io/distroless/static-debian12:nonroot", "debian:bookworm-slim"}, froms[1][1])

	require.Contains(t, df, "CGO_ENABLED=0")
	require.Regexp(t, `go build [^\n]*-o /out/herald \./cmd/herald\b`, df)
	require.Regexp(t, `go build [^\n]*-o /out/herald-demo \./examples/demo\b`, df)
	require.Regexp(t, `(?m)^COPY --from=\S+ [^\n]*/herald [^\n]*/herald-demo /usr/local/bin/\s*$`, df)
	require.Regexp(t, `(?m)^EXPOSE 8288\s*$`, df)
	require.Regexp(t, `(?m)^ENTRYPOINT \["/usr/local/bin/herald"\]\s*$`, df)
	require.Regexp(t, `(?m)^CMD \["serve"\]\s*$`, df)
}

func TestDockerignore(t *testing.T) {
	t.Parallel()
	var entries []string
	for _, l := range strings.Split(readRepoFile(t, ".dockerignore"), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			entries = append(entries, l)
		}
	}
	for _, want := range []string{".git", "bin/", ".herald/", "*.test"} {
		require.Contains(t, entries, want)
	}
	// The build needs these; ignoring them would break `docker build`.
	for _, keep := range []string{"go.mod", "go.sum", "cmd", "cmd/", "examples", "examples/", "*", "*.go"} {
		require.NotContains(t, entries, keep)
	}
}

func TestImages(t *testing.T) {
	t.Parallel()
	for name, s := range project(t).Services {
		require.NotContainsf(t, s.Image, "temporalio/auto-setup", "service %q uses the deprecated auto-setup image", name)
		if s.Build == nil {
			require.Regexpf(t, `^[^:]+:[0-9][^:]*$`, s.Image, "service %q must pin a versioned image tag", name)
		}
	}
	require.True(t, strings.HasPrefix(service(t, svcTemporal).Image, "temporalio/server:"))
	require.True(t, strings.HasPrefix(service(t, svcTemporalUI).Image, "temporalio/ui:2."))
	require.True(t, strings.HasPrefix(service(t, svcPostgres).Image, "postgres:"))

	// Schema files come from admin-tools and must match the server version.
	serverTag := strings.TrimPrefix(service(t, svcTemporal).Image, "temporalio/server:")
	for _, name := range []string{svcTemporalSchema, svcNamespace} {
		require.Equal(t, "temporalio/admin-tools:"+serverTag, service(t, name).Image, name)
	}
}

func TestPostgres(t *testing.T) {
	t.Parallel()
	pg := service(t, svcPostgres)
	e := env(t, pg)
	require.Equal(t, map[string]string{
		"POSTGRES_USER": "herald", "POSTGRES_PASSWORD": "herald", "POSTGRES_DB": "herald",
	}, e)
	require.NotNil(t, pg.HealthCheck)
	require.Contains(t, strings.Join(pg.HealthCheck.Test, " "), "pg_isready")

	var dataVolume bool
	for _, v := range pg.Volumes {
		if v.Type == types.VolumeTypeVolume && v.Target == "/var/lib/postgresql/data" {
			_, declared := project(t).Volumes[v.Source]
			require.Truef(t, declared, "volume %q must be declared", v.Source)
			dataVolume = true
		}
	}
	require.True(t, dataVolume, "postgres data must live in a named volume")

	for _, p := range pg.Ports {
		require.Equal(t, "127.0.0.1", p.HostIP, "postgres may only be published on loopback")
	}
}

func TestTemporalSchemaJob(t *testing.T) {
	t.Parallel()
	sh := script(service(t, svcTemporalSchema))
	// Expand the $tool shorthand the script uses so each command reads in full.
	if m := regexp.MustCompile(`tool="([^"]+)"`).FindStringSubmatch(sh); m != nil {
		sh = strings.ReplaceAll(sh, "$tool", m[1])
	}
	sh = strings.ReplaceAll(sh, "$schema", "/etc/temporal/schema/postgresql/v12")

	pg := env(t, service(t, svcPostgres))
	prefix := "temporal-sql-tool --plugin postgres12 --ep postgres -p 5432 -u " + pg["POSTGRES_USER"]
	for _, db := range []struct{ name, dir string }{
		{"temporal", "temporal"},
		{"temporal_visibility", "visibility"},
	} {
		cmds := []string{
			prefix + " --db " + db.name + " create-database",
			prefix + " --db " + db.name + " setup-schema -v 0.0",
			prefix + " --db " + db.name + " update-schema -d /etc/temporal/schema/postgresql/v12/" + db.dir + "/versioned",
		}
		last := -1
		for _, c := range cmds {
			i := strings.Index(sh, c)
			require.GreaterOrEqualf(t, i, 0, "schema job must run %q; script is:\n%s", c, sh)
			require.Greaterf(t, i, last, "schema job must run %q after the previous step", c)
			last = i
		}
	}
	require.Regexp(t, `^/bin/sh -ec? `, sh, "the script must stop at the first failing step")
	require.Equal(t, pg["POSTGRES_PASSWORD"], env(t, service(t, svcTemporalSchema))["SQL_PASSWORD"])
}

func TestTemporalServer(t *testing.T) {
	t.Parallel()
	tmp := service(t, svcTemporal)
	pg := env(t, service(t, svcPostgres))
	e := env(t, tmp)
	require.Equal(t, "postgres12", e["DB"])
	require.Equal(t, svcPostgres, e["POSTGRES_SEEDS"])
	require.Equal(t, "5432", e["DB_PORT"])
	require.Equal(t, pg["POSTGRES_USER"], e["POSTGRES_USER"])
	require.Equal(t, pg["POSTGRES_PASSWORD"], e["POSTGRES_PWD"])
	// The databases temporal-schema created.
	require.Equal(t, "temporal", e["DBNAME"])
	require.Equal(t, "temporal_visibility", e["VISIBILITY_DBNAME"])
	// Reachable from the other containers, not just loopback.
	require.Equal(t, "0.0.0.0", e["BIND_ON_IP"])

	// The dynamic config file the server reads must be mounted from a declared config.
	dc := e["DYNAMIC_CONFIG_FILE_PATH"]
	require.NotEmpty(t, dc)
	var mounted bool
	for _, c := range tmp.Configs {
		if c.Target == dc {
			cfg, ok := project(t).Configs[c.Source]
			require.Truef(t, ok, "config %q must be declared", c.Source)
			require.Truef(t, cfg.Content != "" || cfg.File != "", "config %q has neither content nor a file", c.Source)
			mounted = true
		}
	}
	require.Truef(t, mounted, "DYNAMIC_CONFIG_FILE_PATH %s is not mounted", dc)

	require.NotNil(t, tmp.HealthCheck)
	require.Contains(t, strings.Join(tmp.HealthCheck.Test, " "), "7233")
}

func TestTemporalNamespaceJob(t *testing.T) {
	t.Parallel()
	sh := script(service(t, svcNamespace))
	ns := env(t, service(t, svcHerald))["HERALD_TEMPORAL_NAMESPACE"]
	require.Regexp(t, `^/bin/sh -ec? `, sh)
	require.Contains(t, sh, "until temporal operator cluster health", "must wait for the server")
	require.Contains(t, sh, "temporal operator namespace create --namespace "+ns)
	require.Contains(t, sh, "temporal operator namespace describe --namespace "+ns, "must be idempotent")
	require.Contains(t, sh, "addr=temporal:7233")
	require.Contains(t, sh, "exit 1", "the wait loop must be bounded")
}

func TestTemporalUI(t *testing.T) {
	t.Parallel()
	require.Equal(t, "temporal:7233", env(t, service(t, svcTemporalUI))["TEMPORAL_ADDRESS"])
}
