package herald

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/worker"
)

type nopClient struct{ client.Client }

type userInterceptor struct {
	interceptor.WorkerInterceptorBase
}

func TestWorkerStopsGracefully(t *testing.T) {
	t.Parallel()
	w, err := NewWorker(WorkerOptions{App: "shop", Client: nopClient{}})
	require.NoError(t, err)
	require.Equal(t, DefaultStopTimeout, w.temporalOptions().WorkerStopTimeout, "a grace period by default")

	mine := &userInterceptor{}
	w, err = NewWorker(WorkerOptions{App: "shop", Client: nopClient{}, StopTimeout: 3 * time.Second,
		Temporal: worker.Options{WorkerStopTimeout: time.Hour, MaxConcurrentActivityExecutionSize: 7, Interceptors: []interceptor.WorkerInterceptor{mine}}})
	require.NoError(t, err)
	topts := w.temporalOptions()
	require.Equal(t, 3*time.Second, topts.WorkerStopTimeout, "StopTimeout wins")
	require.Equal(t, 7, topts.MaxConcurrentActivityExecutionSize, "the user's options are kept")
	require.Len(t, topts.Interceptors, 2)
	require.IsType(t, &errorInterceptor{}, topts.Interceptors[0], "Herald's interceptor first: it sees the activity's own errors")
	require.Same(t, mine, topts.Interceptors[1])
}
