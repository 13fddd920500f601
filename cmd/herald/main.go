// Command herald runs and operates Herald: the development server, the
// production server, migrations, and commands to send and inspect events.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func commands() []command {
	return []command{
		devCommand(),
		serveCommand(),
		migrateCommand(),
		sendCommand(),
		eventsCommand(),
		webhooksCommand(),
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes one command line and returns the process exit code. Commands
// that serve stop when ctx is done.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		printUsage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, cmd := range commands() {
		if cmd.name != args[0] {
			continue
		}
		fs := newFlagSet(cmd.name, stderr)
		fs.stdout = stdout
		if cmd.flags != nil {
			cmd.flags(fs)
		}
		fs.Usage = func() { fs.usage(cmd) }
		positional, err := fs.parse(args[1:])
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		if err != nil {
			fmt.Fprintf(stderr, "herald %s: %v\n", cmd.name, err)
			return 2
		}
		if err := cmd.run(ctx, fs, positional); err != nil {
			var ue usageError
			if errors.As(err, &ue) {
				fmt.Fprintf(stderr, "herald %s: %v\n\n", cmd.name, err)
				fs.usage(cmd)
				return 2
			}
			fmt.Fprintf(stderr, "herald %s: %v\n", cmd.name, err)
			return 1
		}
		return 0
	}
	fmt.Fprintf(stderr, "herald: unknown command %q\n\n", args[0])
	printUsage(stderr)
	return 2
}

// usageError marks a wrong command line; run prints the command's help after it.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "Herald: durable event-driven functions on Temporal.")
	fmt.Fprintln(w, "\nUsage: herald <command> [flags]")
	fmt.Fprintln(w, "\nCommands:")
	for _, cmd := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", cmd.name, cmd.summary)
	}
	fmt.Fprintln(w, "\nRun 'herald <command> --help' for a command's flags; every flag also reads the environment variable shown there.")
}
