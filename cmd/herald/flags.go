package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// command declares one herald command: its flags and what it runs, or, for
// a group such as 'herald runs', its subcommands. Declaring commands as values
// keeps every flag's environment variable next to the flag; cobraCommand turns
// the declaration into a cobra command, which parses, nests and completes.
type command struct {
	name    string
	args    string // positional arguments, for the usage line
	summary string // one line, in the list of commands
	about   string // what --help says instead of summary, when set
	run     func(ctx context.Context, fs *flagSet, args []string) error
	flags   func(fs *flagSet)
	sub     []command // a group's commands; a group has no run or flags
}

// flagSet is a command's flags, each of which also reads an environment
// variable: the flag wins over the variable, the variable over the default.
// The variable's value becomes the flag's default when the command tree is
// built, so a bad value is reported even when the flag is also given, as it
// always was.
type flagSet struct {
	*pflag.FlagSet
	stdout io.Writer
	stderr io.Writer
	errs   []string // bad environment values, reported when the command runs
}

// Flag annotations read by printHelp.
const (
	annotationEnv    = "herald_env"    // the flag's environment variable
	annotationSecret = "herald_secret" // --help must not print the default, the variable's value
)

func (fs *flagSet) envValue(env string) (string, bool) {
	if env == "" {
		return "", false
	}
	return os.LookupEnv(env)
}

// annotate records env for --help once the flag name is defined.
func (fs *flagSet) annotate(name, env string) {
	if env != "" {
		_ = fs.SetAnnotation(name, annotationEnv, []string{env})
	}
}

func (fs *flagSet) badEnv(env, v, want string) {
	fs.errs = append(fs.errs, fmt.Sprintf("environment variable %s=%q: %s", env, v, want))
}

// String defines a string flag backed by env.
func (fs *flagSet) String(name, env, def, usage string) *string {
	if v, ok := fs.envValue(env); ok {
		def = v
	}
	p := fs.FlagSet.String(name, def, usage)
	fs.annotate(name, env)
	return p
}

// Secret defines a string flag backed by env whose value --help never shows.
func (fs *flagSet) Secret(name, env, usage string) *string {
	p := fs.String(name, env, "", usage)
	_ = fs.SetAnnotation(name, annotationSecret, []string{"true"})
	return p
}

// Int defines an int flag backed by env.
func (fs *flagSet) Int(name, env string, def int, usage string) *int {
	if v, ok := fs.envValue(env); ok {
		n, err := strconv.Atoi(v)
		if err != nil {
			fs.badEnv(env, v, "must be an integer")
		} else {
			def = n
		}
	}
	p := fs.FlagSet.Int(name, def, usage)
	fs.annotate(name, env)
	return p
}

// Int64 defines an int64 flag backed by env.
func (fs *flagSet) Int64(name, env string, def int64, usage string) *int64 {
	if v, ok := fs.envValue(env); ok {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			fs.badEnv(env, v, "must be an integer")
		} else {
			def = n
		}
	}
	p := fs.FlagSet.Int64(name, def, usage)
	fs.annotate(name, env)
	return p
}

// Bool defines a bool flag backed by env.
func (fs *flagSet) Bool(name, env string, def bool, usage string) *bool {
	if v, ok := fs.envValue(env); ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			fs.badEnv(env, v, "must be true or false")
		} else {
			def = b
		}
	}
	p := fs.FlagSet.Bool(name, def, usage)
	fs.annotate(name, env)
	return p
}

// Duration defines a duration flag backed by env.
func (fs *flagSet) Duration(name, env string, def time.Duration, usage string) *time.Duration {
	if v, ok := fs.envValue(env); ok {
		d, err := time.ParseDuration(v)
		if err != nil {
			fs.badEnv(env, v, "must be a duration such as 5s or 1m")
		} else {
			def = d
		}
	}
	p := fs.FlagSet.Duration(name, def, usage)
	fs.annotate(name, env)
	return p
}

// cobraCommand builds the cobra command c declares. Commands print their
// results to stdout; help and errors go to stderr.
func (c command) cobraCommand(stdout, stderr io.Writer) *cobra.Command {
	cc := &cobra.Command{
		Use:   strings.TrimSpace(c.name + " " + c.args),
		Short: c.summary,
		Long:  c.about,
	}
	if len(c.sub) > 0 {
		var names []string
		for _, s := range c.sub {
			cc.AddCommand(s.cobraCommand(stdout, stderr))
			names = append(names, s.name)
		}
		// A group runs nothing itself: without a command, or with an unknown
		// one, it is a usage error, as 'herald' alone is. It has no flags, and
		// ignores its commands' flags to name the command that is wrong.
		cc.FParseErrWhitelist.UnknownFlags = true
		cc.RunE = func(cc *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageError{"expected a command: " + strings.Join(names, ", ")}
			}
			return unknownCommand(cc, args[0])
		}
		return cc
	}
	fs := &flagSet{FlagSet: cc.Flags(), stdout: stdout, stderr: stderr}
	if c.flags != nil {
		c.flags(fs)
	}
	cc.RunE = func(cc *cobra.Command, args []string) error {
		if len(fs.errs) > 0 {
			return envError{strings.Join(fs.errs, "; ")}
		}
		return c.run(cc.Context(), fs, args)
	}
	return cc
}

// unknownCommand is the usage error for a command name c does not have, with
// cobra's suggestions.
func unknownCommand(c *cobra.Command, name string) error {
	msg := fmt.Sprintf("unknown command %q", name)
	if c.SuggestionsMinimumDistance <= 0 {
		c.SuggestionsMinimumDistance = 2 // cobra's default, set where cobra would
	}
	if s := c.SuggestionsFor(name); len(s) > 0 {
		msg += "; did you mean " + strings.Join(s, " or ") + "?"
	}
	return usageError{msg}
}

// printHelp prints a command's help: its usage line, its summary, then its
// commands or its flags, each flag with its environment variable. A secret's
// default is never printed: it would be the variable's value.
func printHelp(w io.Writer, c *cobra.Command) {
	if !c.HasParent() {
		printUsage(w, c)
		return
	}
	summary := c.Long
	if summary == "" {
		summary = c.Short
	}
	if c.HasAvailableSubCommands() {
		fmt.Fprintf(w, "Usage: %s <command>\n\n%s\n\nCommands:\n", c.CommandPath(), strings.TrimSpace(summary))
		printCommands(w, c)
		fmt.Fprintf(w, "\nRun '%s <command> --help' for a command's flags; every flag also reads the environment variable shown there.\n", c.CommandPath())
		return
	}
	_, args, _ := strings.Cut(c.Use, " ")
	fmt.Fprintf(w, "Usage: %s\n\n%s\n", strings.TrimSpace(c.CommandPath()+" [flags] "+args), strings.TrimSpace(summary))
	var flags []*pflag.Flag
	visit := func(f *pflag.Flag) {
		if f.Name != "help" && !f.Hidden {
			flags = append(flags, f)
		}
	}
	c.Flags().VisitAll(visit)
	c.InheritedFlags().VisitAll(visit)
	if len(flags) == 0 {
		return
	}
	fmt.Fprintf(w, "\nFlags:\n")
	for _, f := range flags {
		name, usage := pflag.UnquoteUsage(f)
		line := "  --" + f.Name
		if f.Shorthand != "" {
			line = "  -" + f.Shorthand + ", --" + f.Name
		}
		if name != "" {
			line += " " + name
		}
		fmt.Fprintln(w, line)
		extra := ""
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.Annotations[annotationSecret] == nil {
			extra = fmt.Sprintf(" (default %q)", f.DefValue)
		}
		if env := f.Annotations[annotationEnv]; len(env) > 0 {
			extra += " [$" + env[0] + "]"
		}
		fmt.Fprintf(w, "      %s%s\n", usage, extra)
	}
}

// printCommands lists c's commands with their summaries.
func printCommands(w io.Writer, c *cobra.Command) {
	width := 0
	for _, sub := range c.Commands() {
		if sub.IsAvailableCommand() {
			width = max(width, len(sub.Name()))
		}
	}
	for _, sub := range c.Commands() {
		if sub.IsAvailableCommand() {
			fmt.Fprintf(w, "  %-*s  %s\n", width, sub.Name(), sub.Short)
		}
	}
}

// withLongDashes rewrites -name to --name where name is a long flag of the
// command args select: Go's flag package, which herald used before cobra,
// accepted one dash, and command lines written then keep working. Single
// letters stay shorthands (-h, -o).
func withLongDashes(root *cobra.Command, args []string) []string {
	c, _, err := root.Find(args)
	if err != nil || c == nil {
		return args
	}
	c.InitDefaultHelpFlag()
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = a
		if a == "--" {
			copy(out[i:], args[i:])
			break
		}
		if len(a) < 3 || a[0] != '-' || a[1] == '-' {
			continue
		}
		name, _, _ := strings.Cut(a[1:], "=")
		if len(name) > 1 && c.Flags().Lookup(name) != nil {
			out[i] = "-" + a
		}
	}
	return out
}
