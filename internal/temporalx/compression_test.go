package temporalx

import (
	"testing"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
)

func TestCompressionConnectionOptions(t *testing.T) {
	none, err := CompressionNone.ConnectionOptions()
	require.NoError(t, err)
	require.IsType(t, &client.GrpcCompressionNone{}, none.GrpcCompression)

	gz, err := CompressionGzip.ConnectionOptions()
	require.NoError(t, err)
	require.IsType(t, &client.GrpcCompressionGzip{}, gz.GrpcCompression)

	for _, bad := range []Compression{"", "GZIP", "zstd"} {
		_, err := bad.ConnectionOptions()
		require.ErrorContains(t, err, `must be "none" or "gzip"`, string(bad))
	}
	_, err = NewLazyClient("127.0.0.1:1", "default", "zstd", nil)
	require.ErrorContains(t, err, `gRPC compression "zstd"`)
}
