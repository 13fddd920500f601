// Command herald runs and operates Herald: the development server, the
// production server, migrations, and commands to send and inspect events,
// runs, functions and replays.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

func commands() []command {
	return []command{
		devCommand(),
		serveCommand(),
		migrateCommand(),
		sendCommand(),
		eventsCommand(),
		runsCommand(),
		functionsCommand(),
		replayCommand(),
		webhooksCommand(),
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes one command line and returns the process exit code: 0 on
// success, 2 for a wrong command line, 1 when the command failed. Commands
// that serve stop when ctx is done.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := rootCommand(stdout, stderr)
	if len(args) == 0 {
		printUsage(stderr, root)
		return 2
	}
	root.SetArgs(withLongDashes(root, args))
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return 0
	}
	var (
		ue usageError
		ee envError
	)
	switch {
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "%s: %v\n\n", cmd.CommandPath(), err)
		printHelp(stderr, cmd)
		return 2
	case errors.As(err, &ee):
		fmt.Fprintf(stderr, "%s: %v\n", cmd.CommandPath(), err)
		return 2
	default:
		fmt.Fprintf(stderr, "%s: %v\n", cmd.CommandPath(), err)
		return 1
	}
}

// rootCommand builds the herald command tree, with cobra's completion command.
func rootCommand(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "herald",
		Short:         "Herald: durable event-driven functions on Temporal.",
		SilenceErrors: true, // run prints errors and chooses the exit code
		SilenceUsage:  true,
		// Without Args, cobra reports an unknown command itself, before run
		// can make it a usage error.
		Args: func(c *cobra.Command, args []string) error {
			if len(args) > 0 {
				return unknownCommand(c, args[0])
			}
			return nil
		},
		RunE: func(*cobra.Command, []string) error {
			return usageError{"expected a command"}
		},
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetHelpFunc(func(c *cobra.Command, _ []string) { printHelp(c.ErrOrStderr(), c) })
	root.SetUsageFunc(func(c *cobra.Command) error {
		printHelp(c.ErrOrStderr(), c)
		return nil
	})
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err.Error()} })
	for _, c := range commands() {
		root.AddCommand(c.cobraCommand(stdout, stderr))
	}
	root.InitDefaultCompletionCmd()
	for _, c := range root.Commands() {
		if c.Name() == "completion" {
			c.Short = "print a shell completion script: completion bash, zsh, fish or powershell"
		}
	}
	return root
}

// usageError marks a wrong command line; run prints the command's help after
// it and exits with 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// envError is a bad value in a flag's environment variable; run exits with 2.
type envError struct{ msg string }

func (e envError) Error() string { return e.msg }

func printUsage(w io.Writer, root *cobra.Command) {
	fmt.Fprintln(w, root.Short)
	fmt.Fprintln(w, "\nUsage: herald <command> [flags]")
	fmt.Fprintln(w, "\nCommands:")
	printCommands(w, root)
	fmt.Fprintln(w, "\nRun 'herald <command> --help' for a command's flags; every flag also reads the environment variable shown there.")
}
