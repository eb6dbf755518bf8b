package main

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"github.com/msalcache/msalcache/distributed"
	"github.com/msalcache/msalcache/internal/fakeidp"
	"github.com/msalcache/msalcache/internal/redisserver"
)

// The demo's application registration at the local identity provider.
const (
	demoClientID = "3c9a7e51-0d2b-4f6e-8a14-5b7c9d0e2f31"
	demoUser     = "alice@contoso.example"
	demoTenant   = "msalcache-demo"
)

type demoOptions struct {
	browserCheck bool
	store        string
	shots        string
	timeout      time.Duration
}

func cmdDemo(ctx context.Context, e *env, args []string) error {
	var o demoOptions
	f := newFlags(e, "demo", "[flags]", `
Shows the web app with no account and no network: starts a LOCAL DEMO identity
provider on 127.0.0.1 (it signs in alice@contoso.example with no password; its
tokens are worthless), a throwaway redis-server when one is installed (else the memory
store, shared by the two replicas in this process), and two replicas of the web
app, A and B, on one token cache. Open replica A, sign in, open the API page on
replica B: B serves you from the shared cache without asking the identity
provider. Sign out on B and A no longer has you. Ctrl-C stops it all.

With --browser-check it drives headless Chromium through those steps itself,
prints each one, and exits 0 only if every step held (within --timeout).
Nothing is left running or behind.`)
	f.fs.BoolVar(&o.browserCheck, "browser-check", false, "drive headless Chromium through sign-in on A, the API page on B and sign-out, then exit")
	f.fs.StringVar(&o.store, "store", "auto", "auto (redis-server if installed, else memory), redis or memory")
	f.fs.StringVar(&o.shots, "screenshots", "", "keep the browser check's screenshots in this directory (default: a temporary one, removed)")
	f.fs.DurationVar(&o.timeout, "timeout", 120*time.Second, "the browser check's time limit")
	if err := f.parseNoArgs(args); err != nil {
		return err
	}
	switch o.store {
	case "auto", "redis", "memory":
	default:
		return usageError("--store %q: want auto, redis or memory", o.store)
	}
	if o.browserCheck {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.timeout)
		defer cancel()
	}
	err := runDemo(ctx, e, &o)
	if err != nil && o.browserCheck && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("the browser check did not finish within %v: %w", o.timeout, err)
	}
	return err
}

// demoSite is what the demo runs: the identity provider, the store, and the
// replicas, with what stops them.
type demoSite struct {
	idp   *fakeidp.Server
	redis *redisserver.Server
	store distributed.Store // shared by the replicas when in memory
	urls  [2]string
	stops []func()
}

func (d *demoSite) stop() {
	for i := len(d.stops) - 1; i >= 0; i-- {
		d.stops[i]()
	}
}

func runDemo(ctx context.Context, e *env, o *demoOptions) (err error) {
	say := func(format string, a ...any) { fmt.Fprintf(e.stdout, format+"\n", a...) }
	log := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	d := &demoSite{}
	defer d.stop()

	idp, err := fakeidp.Start(fakeidp.WithTenant(demoTenant),
		fakeidp.WithUnknownUserHint("This demo identity provider signs in "+demoUser))
	if err != nil {
		return err
	}
	d.idp = idp
	d.stops = append(d.stops, idp.Close)
	say("Local DEMO identity provider: %s (not Microsoft Entra ID; it signs in %s, no password)", idp.Authority(), demoUser)

	tmp, err := os.MkdirTemp("", "web-app-demo-")
	if err != nil {
		return err
	}
	d.stops = append(d.stops, func() { os.RemoveAll(tmp) })
	caFile := filepath.Join(tmp, "idp.pem")
	if err := os.WriteFile(caFile, idp.CertPEM(), 0o600); err != nil {
		return err
	}

	storeOpts := storeOptions{store: "memory"}
	_, lookErr := exec.LookPath("redis-server")
	switch {
	case o.store == "memory":
		say("Store: memory (--store memory), shared by the two replicas in this process")
	case lookErr != nil && o.store == "redis":
		return errors.New("--store redis: no redis-server installed (apt-get install -y redis-server)")
	case lookErr != nil:
		say("Store: memory, shared by the two replicas in this process (no redis-server installed;")
		say("       install it to run the replicas on Redis, as in production)")
	default:
		r, err := redisserver.Start(ctx, redisserver.Config{Args: []string{"--loglevel", "warning"}})
		if err != nil {
			return err
		}
		d.redis = r
		d.stops = append(d.stops, func() { r.Stop() })
		storeOpts = storeOptions{store: "redis", redisURL: r.URL()}
		say("Store: a throwaway redis-server at %s; each replica has its own connection", r.URL())
	}
	if storeOpts.store == "memory" {
		d.store = distributed.NewMemoryStore()
		d.stops = append(d.stops, func() { d.store.Close() })
	}

	var lns [2]net.Listener
	for i := range lns {
		if lns[i], err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return err
		}
		d.urls[i] = "http://" + lns[i].Addr().String()
	}
	secret := randomString(24)
	if _, err := idp.AddUser(demoTenant, demoUser); err != nil {
		return err
	}
	if err := idp.RegisterClient(fakeidp.ConfidentialClient{ID: demoClientID, Secret: secret,
		RedirectURIs: []string{d.urls[0] + "/callback", d.urls[1] + "/callback"}}); err != nil {
		return err
	}
	keys := [][]byte{randomKey()}
	sctx, stopServing := context.WithCancel(context.Background())
	var serving sync.WaitGroup
	d.stops = append(d.stops, func() { stopServing(); serving.Wait() })
	for i, name := range []string{"A", "B"} {
		so := serveOptions{
			app:   appOptions{clientID: demoClientID, authority: idp.Authority(), clientSecret: secret, caFile: caFile},
			store: storeOpts, redirectURL: d.urls[i] + "/callback", scopes: fakeidp.MeScope,
			apiURL: idp.MeURL(), name: name,
		}
		srv, closeSrv, err := newServerOn(&so, keys, log, d.store)
		if err != nil {
			lns[i].Close()
			return err
		}
		d.stops = append(d.stops, func() { closeSrv() })
		serving.Go(func() { serveUntil(sctx, lns[i], srv.routes(), "", "") })
	}
	say("Replica A: %s", d.urls[0])
	say("Replica B: %s", d.urls[1])

	if !o.browserCheck {
		say("\nOpen replica A, sign in as %s, then open %s/me on replica B.", demoUser, d.urls[1])
		say("Sign out on B and try A's API page again. Ctrl-C stops everything.")
		<-ctx.Done()
		say("\nStopping: the replicas, the store and the identity provider; temporary files removed.")
		return nil
	}

	shots := o.shots
	if shots == "" {
		shots = filepath.Join(tmp, "screenshots")
	}
	spki, err := spkiHash(idp.CertPEM())
	if err != nil {
		return err
	}
	say("\nBrowser check: headless Chromium through both replicas")
	var before fakeidp.Counts
	c := &browserCheck{a: d.urls[0], b: d.urls[1], username: demoUser, shots: shots, out: indent(e.stdout, "    "),
		trustSPKI: spki, secrets: func() []string { return []string{secret} },
		beforePageB: func() error { before = idp.Requests(); return nil },
		afterPageB: func() error {
			if n := idp.Requests().Sub(before); n.Token != 0 {
				return fmt.Errorf("replica B made %d token requests; the token should have come from the shared cache", n.Token)
			}
			return nil
		},
	}
	if err := c.run(ctx); err != nil {
		return err
	}
	if o.shots == "" {
		say("\n(The screenshots are removed with the demo's temporary files; keep them with --screenshots DIR.)")
	}
	say("\nEvery step held. Stopping everything; nothing is left running or behind.")
	return nil
}

// spkiHash is the base64 SHA-256 of a PEM certificate's public key, as
// Chromium's --ignore-certificate-errors-spki-list wants it.
func spkiHash(certPEM []byte) (string, error) {
	b, _ := pem.Decode(certPEM)
	if b == nil {
		return "", errors.New("no PEM certificate")
	}
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return "", err
	}
	h := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(h[:]), nil
}

// indent prefixes every line written to w.
func indent(w io.Writer, prefix string) io.Writer {
	return &prefixWriter{w: w, prefix: []byte(prefix), start: true}
}

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
