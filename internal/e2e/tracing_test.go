package e2e

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/interceptor"

	"github.com/herald-run/herald"
	"github.com/herald-run/herald/internal/tracing"
)

// One trace runs from the request that sends an event, through the router's
// dispatch, into the workflow and its step on the worker.
func TestTracingFromIngestToWorkflow(t *testing.T) {
	// The tracer provider is global; other tests make no spans (tracing is
	// off for them), so this one sees only its own.
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	prevTP, prevProp := otel.GetTracerProvider(), otel.GetTextMapPropagator()
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.TraceContext{})
	t.Cleanup(func() { otel.SetTracerProvider(prevTP); otel.SetTextMapPropagator(prevProp) })

	ti, err := tracing.TemporalInterceptor()
	require.NoError(t, err)
	tc, err := client.Dial(client.Options{HostPort: devServer.FrontendHostPort(), Namespace: "default", Interceptors: []interceptor.ClientInterceptor{ti}})
	require.NoError(t, err)
	t.Cleanup(tc.Close)
	b := setup(t, setupOpts{temporal: tc, tracing: true}, greetFn("traced", herald.OnEvent("test/traced")))

	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	req, err := http.NewRequest(http.MethodPost, b.url+"/e/test", strings.NewReader(`{"name":"test/traced","data":{"name":"ada"}}`))
	require.NoError(t, err)
	req.Header.Set("traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	events := b.eventsNamed(t, "test/traced")
	require.Len(t, events, 1)
	run := b.waitRuns(t, events[0].ID, 1)[0]
	require.Equal(t, "Completed", run.Status, run.Error)
	// The run is recorded by its last activity; its workflow span ends with
	// the workflow, a moment later.
	require.NoError(t, tc.GetWorkflow(context.Background(), run.WorkflowID, "").Get(context.Background(), nil))
	require.Eventually(t, func() bool {
		for _, s := range exp.GetSpans() {
			if s.Name == "RunWorkflow:traced" {
				return true
			}
		}
		return false
	}, 10*time.Second, 20*time.Millisecond, "the workflow's span is exported")

	byName := map[string]tracetest.SpanStub{}
	for _, s := range exp.GetSpans() {
		if s.SpanContext.TraceID().String() == traceID {
			byName[s.Name] = s
		}
	}
	ingestSpan, ok := byName["POST /e/:key"]
	require.True(t, ok, "ingest span in the caller's trace; have %v", names(byName))
	require.Equal(t, "00f067aa0ba902b7", ingestSpan.Parent.SpanID().String(), "the ingest span continues the caller's span")
	dispatch, ok := byName["herald.dispatch "+b.app+"/traced"]
	require.True(t, ok, "router span in the same trace; have %v", names(byName))
	require.Equal(t, ingestSpan.SpanContext.SpanID(), dispatch.Parent.SpanID(), "the router's span is a child of the ingest span")
	for _, want := range []string{"StartWorkflow:traced", "RunWorkflow:traced"} {
		_, ok := byName[want]
		require.True(t, ok, "%s in the same trace; have %v", want, names(byName))
	}
}

func names(m map[string]tracetest.SpanStub) []string {
	var out []string
	for n := range m {
		out = append(out, n)
	}
	return out
}
