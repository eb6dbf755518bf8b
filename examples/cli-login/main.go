// Command cli-login is a command-line program that signs users in with
// MSAL Go's device code flow and keeps their tokens in an msalcache cache:
// encrypted with the operating system's protection, shared safely by every
// process of the user. It works over SSH and in containers, and shows how a
// headless tool wires msalcache into public.New.
//
//	cli-login login  --client-id ID [--tenant T | --authority URL]   sign in (device code)
//	cli-login token  --client-id ID [--json]                          print an access token from the cache
//	cli-login accounts --client-id ID                                 list the signed-in accounts
//	cli-login logout --client-id ID [--all | USER]                    sign out
//	cli-login doctor                                                  check this machine's token cache protection
//	cli-login demo                                                    all of it against a local identity provider
//
// Every flag can also be set by an environment variable (MSALCACHE_CLIENT_ID,
// MSALCACHE_TENANT, ...; see each command's --help). Flags win.
//
// Exit status: 0 success; 1 error; 2 usage error; 3 sign-in needed (run
// login); 4 the token cache is not healthy (doctor); 130 interrupted (Ctrl-C).
//
// The token command prints an access token to standard output because that
// is its purpose; nothing else ever prints a token, code or key.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
)

// Exit statuses, documented in --help and in the README.
const (
	exitOK          = 0
	exitError       = 1
	exitUsage       = 2
	exitSignIn      = 3 // no usable account or refresh token: run login
	exitUnhealthy   = 4 // doctor: persistence is not healthy
	exitInterrupted = 130
)

const exitCodesHelp = `Exit status:
  0    success
  1    error (network, identity provider, file system, ...)
  2    usage error (unknown flag, missing --client-id, ...)
  3    sign-in needed: no account, or its refresh token is gone; run "cli-login login"
  4    doctor: the token cache is not healthy on this machine
  130  interrupted (Ctrl-C); the cache lock is released
`

func main() {
	os.Exit(mainWithSignals(os.Args[1:]))
}

// mainWithSignals runs the program with a context that Ctrl-C (and SIGTERM)
// cancels: every wait (identity provider, lock, keyring) ends, deferred
// unlocks run, and the exit status is 130.
func mainWithSignals(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return run(ctx, args, os.Stdout, os.Stderr, os.Getenv)
}

// env is what a command works with: its output streams and its environment.
type env struct {
	stdout, stderr io.Writer
	getenv         func(string) string
}

type command struct {
	name, usage, summary string
	hidden               bool
	run                  func(ctx context.Context, e *env, args []string) error
}

// commands lists the commands (a function: the demo runs commands itself).
func commands() []command {
	return []command{
		{"login", "[flags]", "sign in with the device code flow", false, cmdLogin},
		{"token", "[flags]", "print an access token from the cache (silent; no prompt)", false, cmdToken},
		{"accounts", "[flags]", "list the signed-in accounts", false, cmdAccounts},
		{"logout", "[flags] [--all | USER]", "sign out one account, or everyone (--all)", false, cmdLogout},
		{"doctor", "[flags]", "check what this machine offers to protect the token cache", false, cmdDoctor},
		{"demo", "[flags]", "the whole story against a local identity provider: no account, no network", false, cmdDemo},
	}
}

// run is the whole program: it runs the command in args and returns the
// exit status. Tests call it in-process, and re-execute the test binary as
// the program.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	name := args[0]
	switch name {
	case "help", "-h", "-help", "--help":
		usage(stdout)
		return exitOK
	}
	cmds := commands()
	i := slices.IndexFunc(cmds, func(c command) bool { return c.name == name })
	if i < 0 {
		fmt.Fprintf(stderr, "cli-login: unknown command %q\n\n", name)
		usage(stderr)
		return exitUsage
	}
	e := &env{stdout: stdout, stderr: stderr, getenv: getenv}
	err := cmds[i].run(ctx, e, args[1:])
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return exitOK
	case ctx.Err() != nil:
		fmt.Fprintf(stderr, "cli-login %s: interrupted\n", name)
		return exitInterrupted
	}
	code := exitError
	var xe *exitErr
	if errors.As(err, &xe) {
		code = xe.code
	}
	fmt.Fprintf(stderr, "cli-login %s: %v\n", name, err)
	if code == exitUsage {
		fmt.Fprintf(stderr, "Run 'cli-login %s --help' for usage.\n", name)
	}
	return code
}

func usage(w io.Writer) {
	fmt.Fprint(w, `cli-login signs in with MSAL Go's device code flow and keeps the tokens in an
encrypted token cache (msalcache) shared safely by every process of the user.

Usage: cli-login COMMAND [flags]

Commands:
`)
	for _, c := range commands() {
		if !c.hidden {
			fmt.Fprintf(w, "  %-9s %s\n", c.name, c.summary)
		}
	}
	fmt.Fprint(w, `
Run 'cli-login COMMAND --help' for a command's flags. Every flag can also be
set by an environment variable (MSALCACHE_CLIENT_ID, MSALCACHE_TENANT, ...).

`+exitCodesHelp)
}

// exitErr carries the exit status of an error.
type exitErr struct {
	code int
	err  error
}

func (e *exitErr) Error() string { return e.err.Error() }
func (e *exitErr) Unwrap() error { return e.err }

func usageError(format string, a ...any) error {
	return &exitErr{exitUsage, fmt.Errorf(format, a...)}
}

func signInError(format string, a ...any) error {
	return &exitErr{exitSignIn, fmt.Errorf(format, a...)}
}

// oneLine flattens an error message for a report line.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
