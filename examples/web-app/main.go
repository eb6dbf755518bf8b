// Command web-app is a confidential-client web app and daemon built on MSAL
// Go and msalcache's distributed token cache: every user's tokens live in
// their own partition of a shared store (process memory, or Redis, PostgreSQL
// or both for many replicas), so any replica serves any signed-in user without asking the
// identity provider again.
//
//	web-app serve  --client-id ID (--client-secret S | --client-cert PEM) [--redis URL] [--postgres URL]   the web app
//	web-app daemon --client-id ID --tenants T1,T2 (--client-secret S | --client-cert PEM)  app tokens per tenant
//	web-app idp    [--replicas ADDR1,ADDR2] [--users U1,U2]                                the demo identity provider alone, for your own replicas
//	web-app demo   [--browser-check]                                                      all of it, locally
//
// The web app signs users in with the authorization code flow and PKCE,
// checking state and nonce; its session cookie holds no token, only a sealed
// session ID and the key of the user's partition. Signing out removes the
// user's partition from the store, for every replica. The /me page calls a
// downstream API with a token from AcquireTokenSilent and shows who the user
// is and when the token expires, never the token itself.
//
// Every flag can also be set by an environment variable (WEBAPP_CLIENT_ID,
// WEBAPP_CLIENT_SECRET, ...; see each command's --help). Flags win. Secrets
// belong in the environment: a flag's value is visible to other users in the
// process list.
//
// Exit status: 0 success; 1 error; 2 usage error; 130 interrupted (Ctrl-C).
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
	exitInterrupted = 130
)

const exitCodesHelp = `Exit status:
  0    success (serve and daemon: stopped by Ctrl-C or SIGTERM after a clean shutdown)
  1    error (identity provider, store, a failed browser check, ...)
  2    usage error (unknown flag, missing --client-id, bad key, ...)
  130  interrupted before the command could finish (demo)
`

func main() {
	os.Exit(mainWithSignals(os.Args[1:]))
}

// mainWithSignals runs the program with a context that Ctrl-C (and SIGTERM)
// cancels: servers shut down, the demo stops what it started.
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
	run                  func(ctx context.Context, e *env, args []string) error
	// stopOK: the command runs until it is stopped, and a stop is success.
	stopOK bool
}

func commands() []command {
	return []command{
		{"serve", "[flags]", "run the web app (sign-in, the /me page, sign-out)", cmdServe, true},
		{"daemon", "[flags]", "get an app token per tenant every interval (client credentials)", cmdDaemon, true},
		{"idp", "[flags]", "run the local demo identity provider alone and print the serve command lines for your own replicas", cmdIDP, true},
		{"demo", "[flags]", "a local identity provider, a store and two replicas; --browser-check drives Chromium through them", cmdDemo, false},
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
		fmt.Fprintf(stderr, "web-app: unknown command %q\n\n", name)
		usage(stderr)
		return exitUsage
	}
	e := &env{stdout: stdout, stderr: stderr, getenv: getenv}
	err := cmds[i].run(ctx, e, args[1:])
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return exitOK
	case ctx.Err() != nil && cmds[i].stopOK:
		return exitOK
	case ctx.Err() != nil:
		fmt.Fprintf(stderr, "web-app %s: interrupted\n", name)
		return exitInterrupted
	}
	code := exitError
	var xe *exitErr
	if errors.As(err, &xe) {
		code = xe.code
	}
	fmt.Fprintf(stderr, "web-app %s: %v\n", name, err)
	if code == exitUsage {
		fmt.Fprintf(stderr, "Run 'web-app %s --help' for usage.\n", name)
	}
	return code
}

func usage(w io.Writer) {
	fmt.Fprint(w, `web-app is a confidential-client web app and daemon on MSAL Go, with the
tokens of every user in their own partition of a distributed token cache
(process memory, or Redis, PostgreSQL or both, shared by many replicas).

Usage: web-app COMMAND [flags]

Commands:
`)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-7s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, `
Run 'web-app COMMAND --help' for a command's flags. Every flag can also be set
by an environment variable (WEBAPP_CLIENT_ID, WEBAPP_CLIENT_SECRET, ...); give
secrets that way, not as flags, which other users can see in the process list.

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

// oneLine flattens a message for a log or report line.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
