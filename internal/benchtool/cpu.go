package benchtool

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// tick is the unit of the CPU times in /proc/PID/stat: USER_HZ, which Linux
// fixes at 100 a second for what it exports there, whatever the kernel's own
// tick rate.
const tick = 10 * time.Millisecond

// ProcessCPU is the CPU time (user and system) process pid has used so far,
// with that of its children it has waited for, from /proc/PID/stat; 0 when
// the process is gone or /proc cannot be read.
func ProcessCPU(pid int) time.Duration {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	_, cpu, ok := parseStat(raw)
	if !ok {
		return 0
	}
	return cpu
}

// CommandCPU is the CPU time used so far by every running process whose
// command name (/proc/PID/comm, at most 15 bytes) is comm, each with that
// of its children it has waited for: "postgres" sums a PostgreSQL server's
// postmaster, backends and background workers, and a backend that has
// exited still counts, in its postmaster. A process that exits between two
// readings without a parent of the same name takes its time with it.
func CommandCPU(comm string) time.Duration {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	var total time.Duration
	for _, path := range stats {
		raw, err := os.ReadFile(path)
		if err != nil {
			continue // exited since the glob
		}
		if name, cpu, ok := parseStat(raw); ok && name == comm {
			total += cpu
		}
	}
	return total
}

// parseStat reads the command name and the CPU time from the contents of
// /proc/PID/stat: "pid (comm) state ppid ...", where the 14th to 17th
// fields are the process's user and system time and those of its children
// it has waited for. comm may itself hold spaces and parentheses, so the
// fields are counted from its last ')'.
func parseStat(raw []byte) (comm string, cpu time.Duration, ok bool) {
	open, end := bytes.IndexByte(raw, '('), bytes.LastIndexByte(raw, ')')
	if open < 0 || end < open {
		return "", 0, false
	}
	fields := bytes.Fields(raw[end+1:]) // fields[0] is the 3rd field, state
	if len(fields) < 15 {
		return "", 0, false
	}
	var ticks int64
	for _, f := range fields[11:15] { // utime, stime, cutime, cstime
		n, err := strconv.ParseInt(string(f), 10, 64)
		if err != nil {
			return "", 0, false
		}
		ticks += n
	}
	return string(raw[open+1 : end]), time.Duration(ticks) * tick, true
}

// PerItem is cpu spread over n items (events, requests, rows, runs), in
// microseconds; 0 when n is 0.
func PerItem(cpu time.Duration, n float64) float64 {
	if n <= 0 {
		return 0
	}
	return float64(cpu.Microseconds()) / n
}
