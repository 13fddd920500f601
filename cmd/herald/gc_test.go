package main

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestGCSettings(t *testing.T) {
	env := func(vars map[string]string) func(string) string {
		return func(k string) string { return vars[k] }
	}
	gc, limit := gcSettings(env(nil), "")
	require.Equal(t, defaultGCPercent, gc)
	require.Zero(t, limit, "no cgroup limit: no soft limit")

	gc, limit = gcSettings(env(nil), "max\n")
	require.Equal(t, defaultGCPercent, gc)
	require.Zero(t, limit)

	_, limit = gcSettings(env(nil), "536870912\n")
	require.EqualValues(t, 429496728, limit, "80% of a 512 MiB container")

	gc, limit = gcSettings(env(map[string]string{"GOGC": "100", "GOMEMLIMIT": "300MiB"}), "536870912")
	require.Zero(t, gc, "GOGC set: Go's reading of it stands")
	require.Zero(t, limit, "GOMEMLIMIT set: Go's reading of it stands")
}
