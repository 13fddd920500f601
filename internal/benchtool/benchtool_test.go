package benchtool

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestMeanAndRateList(t *testing.T) {
	require.InDelta(t, 48.4, Mean([]float64{45.9, 50.9}), 1e-9)
	require.Equal(t, "45.9, 50.9", RateList([]float64{45.9, 50.94}))
	require.Equal(t, "", RateList(nil))
}
