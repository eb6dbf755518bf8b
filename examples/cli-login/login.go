package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/public"
)

func cmdLogin(ctx context.Context, e *env, args []string) error {
	var o options
	f := newFlags(e, "login", "[flags]", `
Signs in with the device code flow: prints a URL and a code to standard error;
open the URL on any device (a phone will do), enter the code and sign in. This
works over SSH and in containers. The tokens are kept in the token cache, so
that later 'cli-login token' calls, in any process, need no sign-in.`)
	f.appFlags(&o)
	f.scopesFlag(&o)
	f.cacheFlags(&o)
	if err := f.parseNoArgs(args); err != nil {
		return err
	}
	if err := f.checkApp(&o); err != nil {
		return err
	}
	app, c, err := o.open(e)
	if err != nil {
		return err
	}
	defer c.Close()
	res, err := deviceLogin(ctx, app, o.scopeList(), e.stderr)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "Signed in as %s.\nTokens are cached in %s (%s).\n",
		res.Account.PreferredUsername, c.Path(), describeProtection(c.Protection()))
	return nil
}

// deviceLogin runs the device code flow: it shows the URL and the code on w
// and waits, with a progress line, until the user has signed in, the code
// expires or ctx is done.
func deviceLogin(ctx context.Context, app public.Client, scopes []string, w io.Writer) (public.AuthResult, error) {
	dc, err := app.AcquireTokenByDeviceCode(ctx, scopes)
	if err != nil {
		return public.AuthResult{}, fmt.Errorf("starting the device code sign-in: %w", err)
	}
	fmt.Fprintf(w, "To sign in, open %s in a browser (on any device) and enter the code %s\n",
		dc.Result.VerificationURL, dc.Result.UserCode)
	var res public.AuthResult
	err = waitWithProgress(w, dc.Result.ExpiresOn, func() error {
		res, err = dc.AuthenticationResult(ctx)
		return err
	})
	if err != nil {
		return public.AuthResult{}, fmt.Errorf("device code sign-in: %w", err)
	}
	return res, nil
}

// waitWithProgress runs wait and, while it runs, shows a spinner with the
// time left on w if w is a terminal, or else one line.
func waitWithProgress(w io.Writer, expires time.Time, wait func() error) error {
	done := make(chan error, 1)
	go func() { done <- wait() }()
	if !isTerminal(w) {
		fmt.Fprintln(w, "Waiting for the sign-in (Ctrl-C cancels)...")
		return <-done
	}
	const frames = `|/-\`
	tick := time.NewTicker(125 * time.Millisecond)
	defer tick.Stop()
	last := 0
	for i := 0; ; i++ {
		select {
		case err := <-done:
			fmt.Fprint(w, "\r"+strings.Repeat(" ", last)+"\r")
			return err
		case <-tick.C:
			left := time.Until(expires).Round(time.Second)
			line := fmt.Sprintf("%c Waiting for the sign-in... code valid for %s (Ctrl-C cancels)", frames[i%len(frames)], left)
			fmt.Fprint(w, "\r"+line)
			last = len(line)
		}
	}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// describeProtection says in words what protects the cache file.
func describeProtection(p string) string {
	switch p {
	case "dpapi":
		return "encrypted with DPAPI for this Windows user"
	case "keychain":
		return "encrypted; the key is in the macOS Keychain"
	case "secret-service":
		return "encrypted; the key is in the Secret Service keyring"
	case "plaintext":
		return "NOT encrypted: plaintext, readable by this user only"
	}
	return p
}
