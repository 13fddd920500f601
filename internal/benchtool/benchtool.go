// Package benchtool holds what the two bench programs (internal/bench, make
// bench; internal/prodtest/prodbench, make prodbench) both compute from their
// measurements.
package benchtool

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
)

// Mean is the mean of xs (NaN when xs is empty).
func Mean(xs []float64) float64 {
	var sum float64
	for _, x := range xs {
		sum += x
	}
	return sum / float64(len(xs))
}

// RateList formats the rates of each round for a bench line: "45.9, 50.9".
func RateList(xs []float64) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = strconv.FormatFloat(x, 'f', 1, 64)
	}
	return strings.Join(parts, ", ")
}

// HistoryLength is the history length of one completed workflow of the
// type: every run of one type has the same shape.
func HistoryLength(ctx context.Context, c client.Client, workflowType string) (int64, error) {
	resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
		PageSize: 1,
		Query:    fmt.Sprintf("WorkflowType = '%s' AND ExecutionStatus = 'Completed'", workflowType),
	})
	if err != nil {
		return 0, fmt.Errorf("no completed %s workflow to measure: %w", workflowType, err)
	}
	if len(resp.GetExecutions()) == 0 {
		return 0, fmt.Errorf("no completed %s workflow to measure", workflowType)
	}
	return resp.GetExecutions()[0].GetHistoryLength(), nil
}
