package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

// command is one herald subcommand.
type command struct {
	name    string
	args    string // positional arguments, for the usage line
	summary string
	run     func(ctx context.Context, fs *flagSet, args []string) error
	flags   func(fs *flagSet)
}

// flagSet is a flag.FlagSet whose every flag also reads an environment
// variable; the flag wins over the variable, the variable over the default.
type flagSet struct {
	*flag.FlagSet
	env    map[string]string // flag name -> environment variable
	secret map[string]bool   // flags whose value --help must not print
	stdout io.Writer
	stderr io.Writer
	errs   []string
}

func newFlagSet(name string, stderr io.Writer) *flagSet {
	fs := &flagSet{FlagSet: flag.NewFlagSet(name, flag.ContinueOnError), env: map[string]string{}, secret: map[string]bool{}, stderr: stderr}
	fs.SetOutput(stderr)
	return fs
}

func (fs *flagSet) envValue(name, env string) (string, bool) {
	fs.env[name] = env
	if env == "" {
		return "", false
	}
	return os.LookupEnv(env)
}

func (fs *flagSet) badEnv(env, v, want string) {
	fs.errs = append(fs.errs, fmt.Sprintf("environment variable %s=%q: %s", env, v, want))
}

// String defines a string flag backed by env.
func (fs *flagSet) String(name, env, def, usage string) *string {
	if v, ok := fs.envValue(name, env); ok {
		def = v
	}
	return fs.FlagSet.String(name, def, usage)
}

// Secret defines a string flag backed by env whose value --help never shows.
func (fs *flagSet) Secret(name, env, usage string) *string {
	fs.secret[name] = true
	return fs.String(name, env, "", usage)
}

// Int defines an int flag backed by env.
func (fs *flagSet) Int(name, env string, def int, usage string) *int {
	if v, ok := fs.envValue(name, env); ok {
		n, err := strconv.Atoi(v)
		if err != nil {
			fs.badEnv(env, v, "must be an integer")
		} else {
			def = n
		}
	}
	return fs.FlagSet.Int(name, def, usage)
}

// Int64 defines an int64 flag backed by env.
func (fs *flagSet) Int64(name, env string, def int64, usage string) *int64 {
	if v, ok := fs.envValue(name, env); ok {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			fs.badEnv(env, v, "must be an integer")
		} else {
			def = n
		}
	}
	return fs.FlagSet.Int64(name, def, usage)
}

// Bool defines a bool flag backed by env.
func (fs *flagSet) Bool(name, env string, def bool, usage string) *bool {
	if v, ok := fs.envValue(name, env); ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			fs.badEnv(env, v, "must be true or false")
		} else {
			def = b
		}
	}
	return fs.FlagSet.Bool(name, def, usage)
}

// Duration defines a duration flag backed by env.
func (fs *flagSet) Duration(name, env string, def time.Duration, usage string) *time.Duration {
	if v, ok := fs.envValue(name, env); ok {
		d, err := time.ParseDuration(v)
		if err != nil {
			fs.badEnv(env, v, "must be a duration such as 5s or 1m")
		} else {
			def = d
		}
	}
	return fs.FlagSet.Duration(name, def, usage)
}

// parse parses flags that may come before, after or between positional
// arguments, and returns the positional arguments.
func (fs *flagSet) parse(args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.FlagSet.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(fs.errs) > 0 {
		return nil, fmt.Errorf("%s", strings.Join(fs.errs, "; "))
	}
	return positional, nil
}

// usage prints the command's help, with each flag's environment variable.
func (fs *flagSet) usage(cmd command) {
	w := fs.stderr
	fmt.Fprintf(w, "Usage: herald %s [flags] %s\n\n%s\n", cmd.name, cmd.args, cmd.summary)
	hasFlags := false
	fs.VisitAll(func(*flag.Flag) { hasFlags = true })
	if !hasFlags {
		return
	}
	fmt.Fprintf(w, "\nFlags:\n")
	fs.VisitAll(func(f *flag.Flag) {
		name, usage := flag.UnquoteUsage(f)
		line := "  --" + f.Name
		if name != "" {
			line += " " + name
		}
		fmt.Fprintln(w, line)
		extra := ""
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && !fs.secret[f.Name] {
			extra = fmt.Sprintf(" (default %q)", f.DefValue)
		}
		if env := fs.env[f.Name]; env != "" {
			extra += " [$" + env + "]"
		}
		fmt.Fprintf(w, "      %s%s\n", usage, extra)
	})
}
