package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/internal/fakeidp"
	"github.com/msalcache/msalcache/internal/removeall"
)

// demoClientID is the client ID the demo signs in with; the local identity
// provider accepts any.
const demoClientID = "7d1c5a3e-2b4f-4e6a-8c9d-0e1f2a3b4c5d"

const demoUser = "alice@contoso.example"

func cmdDemo(ctx context.Context, e *env, args []string) error {
	var o options
	f := newFlags(e, "demo", "[flags]", `
Shows the whole story with no account and no network: starts a local demo
identity provider on 127.0.0.1 (the one msalcache's tests use), signs in by
device code (approved automatically), gets the token from the encrypted cache
in a second process without any request to the provider, lists the accounts
and signs out. The cache lives in a temporary directory that is removed at the
end; your own token cache is never touched. Where the platform protection is
unavailable (e.g. no Secret Service), it falls back to an unencrypted cache
with a visible warning.`)
	f.bool(&o.plaintext, "plaintext", envPlaintext, "use an unencrypted cache on purpose")
	f.string(&o.keyringItem, "keyring-item", envKeyringItem, "", "SERVICE/ACCOUNT of the keyring item that holds the cache's key (default msalcache/token-cache-key)")
	if err := f.parseNoArgs(args); err != nil {
		return err
	}
	o.cachePath = "unused" // the demo makes its own
	if err := f.checkCache(&o); err != nil {
		return err
	}
	d := &demo{e: e, out: indent(e.stdout), errOut: indent(e.stderr)}
	return d.run(ctx, &o)
}

type demo struct {
	e           *env
	out, errOut io.Writer // indented, for the commands' own output
	base        []string  // the flags every command gets
	kind        string    // "encrypted" or "unencrypted"
	cachePath   string
}

func (d *demo) say(format string, a ...any) { fmt.Fprintf(d.e.stdout, format+"\n", a...) }

func (d *demo) run(ctx context.Context, o *options) (err error) {
	d.say("msalcache demo: sign in, share the token cache with a second process, sign out.")
	idp, err := fakeidp.Start(fakeidp.WithTenant("msalcache-demo"))
	if err != nil {
		return err
	}
	defer idp.Close()
	d.say("This is a LOCAL DEMO identity provider at %s,", idp.Authority())
	d.say("not Microsoft Entra ID: it approves every sign-in without a password and its tokens are")
	d.say("worthless. Nothing leaves this machine.")

	dir, err := os.MkdirTemp("", "msalcache-demo-")
	if err != nil {
		return err
	}
	defer func() {
		if rerr := removeall.RemoveAll(dir); rerr != nil && err == nil {
			err = fmt.Errorf("removing the demo's temporary files: %w", rerr)
		}
	}()
	certFile := filepath.Join(dir, "demo-idp.pem")
	if err := os.WriteFile(certFile, idp.CertPEM(), 0o600); err != nil {
		return err
	}
	cachePath := filepath.Join(dir, "cache", "msal.cache")
	d.cachePath = cachePath

	d.say("\n[1/5] The token cache")
	settle := *o
	settle.plaintextFallback = true
	c, err := msalcache.New(cachePath, settle.cacheOptions(warnLogger(d.errOut))...)
	if err != nil {
		return err
	}
	defer c.Close()
	d.say("    %s", c.Path())
	d.say("    %s", describeProtection(c.Protection()))
	d.base = []string{"--client-id", demoClientID, "--authority", idp.Authority(), "--ca-file", certFile,
		"--cache", cachePath}
	d.kind = "encrypted"
	if c.Protection() == "plaintext" {
		d.kind = "unencrypted"
		if !o.plaintext {
			d.say("    WARNING: no platform protection here, so the demo goes on with an UNENCRYPTED cache")
			d.say("    (a real program opts in with --plaintext-fallback). 'cli-login doctor' says what to install.")
		}
		d.base = append(d.base, "--plaintext")
	} else if o.keyringItem != "" {
		d.base = append(d.base, "--keyring-item", o.keyringItem)
	}

	d.say("\n[2/5] Sign in with the device code flow: cli-login login")
	idp.SetNextUser(demoUser)
	if code := d.cli(ctx, d.errOut, "login"); code != exitOK {
		return fmt.Errorf("login failed (exit status %d)", code)
	}
	d.say("    (The demo identity provider approved the code at once; a real one waits until you")
	d.say("    have entered it and signed in.)")

	d.say("\n[3/5] A second process asks for a token: cli-login token --json")
	if err := d.secondProcess(ctx, idp); err != nil {
		return err
	}

	d.say("\n[4/5] The signed-in accounts: cli-login accounts")
	if code := d.cli(ctx, d.errOut, "accounts"); code != exitOK {
		return fmt.Errorf("accounts failed (exit status %d)", code)
	}

	d.say("\n[5/5] Sign out, then ask for a token again: cli-login logout %s; cli-login token", demoUser)
	if code := d.cli(ctx, d.errOut, "logout", demoUser); code != exitOK {
		return fmt.Errorf("logout failed (exit status %d)", code)
	}
	var msg bytes.Buffer
	code := d.cli(ctx, &msg, "token")
	if code != exitSignIn {
		return fmt.Errorf("token after logout: exit status %d, want %d: %s", code, exitSignIn, msg.String())
	}
	d.say("    cli-login token now exits with status %d and says:", code)
	fmt.Fprint(d.out, strings.TrimSpace(msg.String())+"\n")

	d.say("\nDone. The demo's temporary files are removed; your own token cache was not touched.")
	d.say("Next: cli-login login --client-id <your app's client ID>   (cli-login --help for all commands)")
	return nil
}

// cli runs a cli-login command in this process, with the demo's flags.
func (d *demo) cli(ctx context.Context, stderr io.Writer, args ...string) int {
	return run(ctx, append(args, d.base...), d.out, stderr, withoutFlagEnv(d.e.getenv))
}

// secondProcess runs 'cli-login token --json' as another process (this
// program, re-executed) and checks that the identity provider heard nothing
// from it: the token came from the cache file.
func (d *demo) secondProcess(ctx context.Context, idp *fakeidp.Server) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, exe, append([]string{"token", "--json"}, d.base...)...)
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool {
		k, _, _ := strings.Cut(kv, "=")
		return slices.Contains(flagEnv, k)
	})
	var stdout bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, d.errOut
	cmd.WaitDelay = 5 * time.Second
	before := idp.Requests()
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("the second process failed: %w", err)
	}
	took := time.Since(start).Round(time.Millisecond)
	n := idp.Requests().Sub(before)
	requests := n.Discovery + n.UserRealm + n.DeviceCode + n.Token + n.Errors
	var tok tokenJSON
	if err := json.Unmarshal(stdout.Bytes(), &tok); err != nil {
		return fmt.Errorf("the second process printed no JSON: %w", err)
	}
	shown := tok.AccessToken
	if len(shown) > 12 {
		shown = shown[:12] + "..."
	}
	d.say("    process %d finished in %s:", cmd.ProcessState.Pid(), took)
	d.say("      account       %s", tok.Account.Username)
	d.say("      access token  %s (%d characters; the token command prints it all)", shown, len(tok.AccessToken))
	d.say("      expires       %s (in %d minutes)", tok.ExpiresOn.Local().Format(time.DateTime), int(time.Until(tok.ExpiresOn).Round(time.Minute).Minutes()))
	if requests != 0 {
		return fmt.Errorf("the second process made %d requests to the identity provider (%+v); want none", requests, n)
	}
	d.say("    The identity provider received 0 requests from it: the token came from the")
	d.say("    %s cache file that the first process wrote, not from the network.", d.kind)
	if d.kind == "encrypted" {
		raw, err := os.ReadFile(d.cachePath)
		if err != nil {
			return err
		}
		if bytes.Contains(raw, []byte(tok.AccessToken)) || bytes.Contains(raw, []byte(`"AccessToken"`)) {
			return fmt.Errorf("the cache file %s holds the token in clear", d.cachePath)
		}
		d.say("    (Checked: the %d-byte file on disk holds no token in clear.)", len(raw))
	}
	return nil
}

// withoutFlagEnv hides the environment variables that set flags, so that the
// demo's own flags are the only ones that count.
func withoutFlagEnv(getenv func(string) string) func(string) string {
	return func(k string) string {
		if slices.Contains(flagEnv, k) {
			return ""
		}
		return getenv(k)
	}
}

// indent prefixes every line written to w with four spaces.
func indent(w io.Writer) io.Writer { return &prefixWriter{w: w, prefix: []byte("    "), start: true} }

type prefixWriter struct {
	w      io.Writer
	prefix []byte
	start  bool
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	var out []byte
	for _, c := range b {
		if p.start {
			out = append(out, p.prefix...)
		}
		out = append(out, c)
		p.start = c == '\n'
	}
	if _, err := p.w.Write(out); err != nil {
		return 0, err
	}
	return len(b), nil
}
