package wire

// Run statuses. A run starts Scheduled or Running (or is recorded Skipped) and
// ends in one of the terminal statuses. The store keeps them as these strings,
// the REST API shows them, and the function wrapper reports them.
const (
	RunScheduled = "Scheduled"
	RunRunning   = "Running"
	RunCompleted = "Completed"
	RunFailed    = "Failed"
	RunCancelled = "Cancelled"
	RunSkipped   = "Skipped"
)

// RunFinished reports whether status is terminal: a run in it never changes again.
func RunFinished(status string) bool {
	switch status {
	case RunCompleted, RunFailed, RunCancelled, RunSkipped:
		return true
	}
	return false
}
