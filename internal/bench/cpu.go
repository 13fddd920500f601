package main

// Where each load's CPU goes. The serving-process figures are ratios of
// rates on one 2-core machine that runs the load client, Herald, PostgreSQL
// and Temporal side by side, so a rate is about what all of them spend per
// event. Each load is therefore also reported as CPU per event (request,
// row, run) by process: what Herald costs next to what its anchor costs, and
// which process a gap is in.

import (
	"fmt"
	"strings"
	"time"

	"github.com/herald-run/herald/internal/benchtool"
)

// cpuSource reads the CPU a process (or set of processes) has used so far.
type cpuSource struct {
	name string
	read func() time.Duration
}

// processCPU reads a child process of the bench.
func processCPU(name string, p *process) cpuSource {
	return cpuSource{name, func() time.Duration { return benchtool.ProcessCPU(p.cmd.Process.Pid) }}
}

// commandCPU reads every process of a command name: "postgres" (a server's
// backends and background workers), "temporal" (a dev server), a worker a
// herald dev started.
func commandCPU(name, comm string) cpuSource {
	return cpuSource{name, func() time.Duration { return benchtool.CommandCPU(comm) }}
}

// cpuPart is what one process used during a load.
type cpuPart struct {
	name string
	cpu  time.Duration
}

// metered runs a load tool and returns its result and the CPU each source
// used meanwhile, with the tool's own last (named client).
func metered(client string, load func() toolResult, sources ...cpuSource) (toolResult, []cpuPart) {
	before := make([]time.Duration, len(sources))
	for i, s := range sources {
		before[i] = s.read()
	}
	r := load()
	parts := make([]cpuPart, 0, len(sources)+1)
	for i, s := range sources {
		parts = append(parts, cpuPart{s.name, s.read() - before[i]})
	}
	return r, append(parts, cpuPart{client, r.cpu})
}

// cpuLine formats parts spread over n items as a bench line's value and
// unit: the total per item, then each part's share, in µs (or ms, for runs).
func cpuLine(parts []cpuPart, n float64, unit time.Duration, per string) (float64, string) {
	scale := float64(unit.Microseconds())
	var total time.Duration
	shares := make([]string, len(parts))
	for i, p := range parts {
		total += p.cpu
		shares[i] = fmt.Sprintf("%s %.1f", p.name, benchtool.PerItem(p.cpu, n)/scale)
	}
	name := "µs"
	if unit == time.Millisecond {
		name = "ms"
	}
	return benchtool.PerItem(total, n) / scale, fmt.Sprintf("%s of CPU per %s (%s)", name, per, strings.Join(shares, ", "))
}

// reportCPU prints a load's CPU per item by process.
func reportCPU(name string, parts []cpuPart, n float64, per string) {
	v, unit := cpuLine(parts, n, time.Microsecond, per)
	report(name, v, unit)
}

// reportRunCPU prints an e2e side's CPU per completed run by process, in ms.
func reportRunCPU(name string, parts []cpuPart, runs float64) {
	v, unit := cpuLine(parts, runs, time.Millisecond, "run")
	report(name, v, unit)
}

// sumParts adds up the parts of several rounds (same processes, same
// order): spread over all the rounds' items, they give the CPU per item of
// the rounds together.
func sumParts(rounds [][]cpuPart) []cpuPart {
	if len(rounds) == 0 {
		return nil
	}
	out := make([]cpuPart, len(rounds[0]))
	for i := range out {
		out[i].name = rounds[0][i].name
		for _, r := range rounds {
			out[i].cpu += r[i].cpu
		}
	}
	return out
}
