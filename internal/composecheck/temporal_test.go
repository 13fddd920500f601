package composecheck

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"text/template"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

// The Temporal server of docker-compose.yml (the temporalio/server image,
// configured by environment) and the one `make prodtest` runs (built from
// source, configured by deploy/temporal/config/herald.yaml, a template over
// the same variables) must not drift apart. These tests render the repo's
// config with the compose service's environment, as the server does, and
// compare the result with what the compose file sets up.

const (
	temporalConfig  = "deploy/temporal/config/herald.yaml"
	temporalDynamic = "deploy/temporal/dynamicconfig/herald.yaml"
)

// renderTemporalConfig renders the config file as Temporal's loader does
// (a Go template; the file uses only sprig's env and default, implemented
// here with the same meaning) with env as the environment.
func renderTemporalConfig(t *testing.T, env map[string]string) map[string]any {
	t.Helper()
	raw := readRepoFile(t, temporalConfig)
	require.Contains(t, strings.SplitN(raw, "\n", 2)[0], "enable-template", "the server renders the file only with this comment in its first lines")
	tpl, err := template.New("herald.yaml").Funcs(template.FuncMap{
		"env": func(name string) string { return env[name] },
		// sprig's default: the given value unless it is empty.
		"default": func(def string, v ...string) string {
			if len(v) == 0 || v[0] == "" {
				return def
			}
			return v[0]
		},
	}).Parse(raw)
	require.NoError(t, err, "%s may use only the env and default functions (extend this test for more)", temporalConfig)
	var out strings.Builder
	require.NoError(t, tpl.Execute(&out, nil))
	var cfg map[string]any
	require.NoError(t, yaml.Unmarshal([]byte(out.String()), &cfg), out.String())
	return cfg
}

func dig(v any, path ...string) any {
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[p]
	}
	return v
}

func TestTemporalConfigMatchesCompose(t *testing.T) {
	t.Parallel()
	e := env(t, service(t, svcTemporal))
	pg := env(t, service(t, svcPostgres))
	cfg := renderTemporalConfig(t, e)

	require.EqualValues(t, mustAtoi(t, e["NUM_HISTORY_SHARDS"]), dig(cfg, "persistence", "numHistoryShards"),
		"the history shard count is fixed at cluster creation: compose and the repo's config must agree")
	require.Greater(t, mustAtoi(t, e["NUM_HISTORY_SHARDS"]), 1, "more than one history shard")

	for store, db := range map[string]string{"default": e["DBNAME"], "visibility": e["VISIBILITY_DBNAME"]} {
		sql := dig(cfg, "persistence", "datastores", store, "sql")
		require.NotNilf(t, sql, "datastore %s", store)
		require.Equal(t, e["DB"], dig(sql, "pluginName"), store)
		require.Equal(t, db, dig(sql, "databaseName"), store)
		require.Equal(t, e["POSTGRES_SEEDS"]+":"+e["DB_PORT"], dig(sql, "connectAddr"), store)
		require.Equal(t, pg["POSTGRES_USER"], dig(sql, "user"), store)
		require.Equal(t, pg["POSTGRES_PASSWORD"], dig(sql, "password"), store)
	}
	require.Equal(t, "visibility", dig(cfg, "persistence", "visibilityStore"))
	require.Equal(t, e["DYNAMIC_CONFIG_FILE_PATH"], dig(cfg, "dynamicConfigClient", "filepath"))
	for _, svc := range []string{"frontend", "history", "matching", "worker"} {
		require.Equal(t, e["BIND_ON_IP"], dig(cfg, "services", svc, "rpc", "bindOnIP"), svc)
	}
	require.EqualValues(t, 7233, dig(cfg, "services", "frontend", "rpc", "grpcPort"), "compose publishes 7233")

	// Rendered without any environment, the defaults are compose's values.
	defaults := renderTemporalConfig(t, map[string]string{"POSTGRES_PWD": e["POSTGRES_PWD"]})
	bindDefault := dig(defaults, "services", "frontend", "rpc", "bindOnIP")
	require.Equal(t, "127.0.0.1", bindDefault, "loopback unless told otherwise")
	withBind := renderTemporalConfig(t, map[string]string{"POSTGRES_PWD": e["POSTGRES_PWD"], "BIND_ON_IP": e["BIND_ON_IP"]})
	require.Equal(t, cfg, withBind, "the defaults of %s are docker-compose.yml's values", temporalConfig)
}

// The temporal service mounts the dynamic config file the prodtest server
// reads, at the path both configurations name.
func TestTemporalDynamicConfigIsTheRepoFile(t *testing.T) {
	t.Parallel()
	tmp := service(t, svcTemporal)
	want, err := filepath.Abs(filepath.Join(repoRoot, temporalDynamic))
	require.NoError(t, err)
	var found bool
	for _, c := range tmp.Configs {
		if c.Target != env(t, tmp)["DYNAMIC_CONFIG_FILE_PATH"] {
			continue
		}
		cfg := project(t).Configs[c.Source]
		require.Equal(t, want, cfg.File, "compose must mount %s, not a copy", temporalDynamic)
		found = true
	}
	require.True(t, found)

	raw, err := os.ReadFile(want)
	require.NoError(t, err)
	var dc map[string][]map[string]any
	require.NoError(t, yaml.Unmarshal(raw, &dc))
	// What Herald needs from the server: search attributes visible at once,
	// and the matcher that honours task priority on 1.29.
	for _, key := range []string{"system.forceSearchAttributesCacheRefreshOnRead", "matching.useNewMatcher"} {
		require.NotEmptyf(t, dc[key], "%s must set %s", temporalDynamic, key)
		require.Equal(t, true, dc[key][0]["value"], key)
	}
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	var n int
	for _, r := range s {
		require.True(t, r >= '0' && r <= '9', "not a number: %q", s)
		n = n*10 + int(r-'0')
	}
	require.NotEmpty(t, s)
	return n
}
