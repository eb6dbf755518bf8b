package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/msalcache/msalcache/distributed"
)

// serveOptions are the flags of the serve command.
type serveOptions struct {
	app               appOptions
	store             storeOptions
	addr, redirectURL string
	scopes, apiURL    string
	name              string
	tlsCert, tlsKey   string
}

const defaultAddr = "127.0.0.1:8080"

func cmdServe(ctx context.Context, e *env, args []string) error {
	var o serveOptions
	f := newFlags(e, "serve", "[flags]", `
Runs the web app: sign-in with the authorization code flow and PKCE (state and
nonce checked), a page that calls a downstream API with a token from
AcquireTokenSilent, and sign-out, which removes the user's tokens from the
shared cache for every replica. Register the app in Microsoft Entra ID as a web
app with the redirect URL --redirect-url, and give it a client secret or
certificate. Run many replicas on one shared store with the same --key and any
of them serves any signed-in user: Redis (--redis), PostgreSQL (--postgres), or
both (Redis serves reads in front of PostgreSQL, which keeps every user signed
in when Redis loses its data).

Example:
  export WEBAPP_CLIENT_ID=... WEBAPP_TENANT=contoso.onmicrosoft.com WEBAPP_CLIENT_SECRET=...
  export WEBAPP_KEY=$(openssl rand -base64 32)
  web-app serve --redis redis://127.0.0.1:6379 --redirect-url https://app.example/callback
  web-app serve --redis redis://127.0.0.1:6379 --postgres postgres://app:pw@db:5432/app --redirect-url https://app.example/callback`)
	f.appFlags(&o.app, "organizations")
	f.storeFlags(&o.store)
	f.string(&o.addr, "addr", envAddr, defaultAddr, "address to listen on")
	f.string(&o.redirectURL, "redirect-url", envRedirectURL, "",
		"the app's redirect URL as registered, ending in /callback (default http://ADDR/callback); cookies are Secure when it is https")
	f.string(&o.scopes, "scopes", envScopes, "User.Read", "the downstream API's scopes, separated by commas or spaces")
	f.string(&o.apiURL, "api-url", envAPIURL, "https://graph.microsoft.com/v1.0/me", "the downstream API that the /me page calls")
	f.string(&o.name, "name", envName, "", "this replica's name, shown on every page (default the listen address)")
	f.fs.StringVar(&o.tlsCert, "tls-cert", "", "serve https with this certificate (PEM); also needs --tls-key")
	f.fs.StringVar(&o.tlsKey, "tls-key", "", "the private key (PEM) of --tls-cert")
	if err := f.parseNoArgs(args); err != nil {
		return err
	}
	if err := f.checkApp(&o.app); err != nil {
		return err
	}
	if err := f.checkStore(&o.store); err != nil {
		return err
	}
	if (o.tlsCert == "") != (o.tlsKey == "") {
		return usageError("--tls-cert and --tls-key go together")
	}
	if o.redirectURL == "" {
		scheme := "http"
		if o.tlsCert != "" {
			scheme = "https"
		}
		o.redirectURL = scheme + "://" + o.addr + "/callback"
	}
	if u, err := url.Parse(o.redirectURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "/callback" {
		return usageError("--redirect-url %q: want an http(s) URL ending in /callback", o.redirectURL)
	}
	if o.apiURL == "" {
		return usageError("--api-url is empty")
	}
	keys, err := appKeys(e, &o.store)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(e.stderr, nil))
	srv, closeSrv, err := newServerOn(&o, keys, log, nil)
	if err != nil {
		return err
	}
	defer closeSrv()
	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "web-app %s: listening on %s (redirect URL %s, %s store)\n", srv.name, ln.Addr(), o.redirectURL, srv.tokens.kind)
	return serveUntil(ctx, ln, srv.routes(), o.tlsCert, o.tlsKey)
}

// appKeys decodes --key; with the memory store and no key, it makes one for
// this process (one process is all the memory store serves).
func appKeys(e *env, o *storeOptions) ([][]byte, error) {
	if o.key != "" {
		return parseKeys(o.key)
	}
	if o.store != "memory" {
		return nil, usageError("--key (or %s) is required with Redis or PostgreSQL: every replica must seal and open the same cookies and tokens. Make one with: openssl rand -base64 32", envKey)
	}
	fmt.Fprintln(e.stderr, "web-app: no --key: using a random key for this process (what it seals and stores is unreadable after a restart)")
	return [][]byte{randomKey()}, nil
}

// newServerOn opens the token cache (on shared, when not nil) and the MSAL
// client, and returns the replica and a function that closes what it opened.
func newServerOn(o *serveOptions, keys [][]byte, log *slog.Logger, shared distributed.Store) (*server, func() error, error) {
	tokens, err := openTokenCache(&o.store, keys, log, shared)
	if err != nil {
		return nil, nil, err
	}
	app, hc, err := o.app.newClient(tokens)
	if err != nil {
		tokens.Close()
		return nil, nil, err
	}
	cookies, err := newSealer(keys, purposeCookies)
	if err != nil {
		tokens.Close()
		return nil, nil, err
	}
	recSeal, err := newSealer(keys, purposeRecords)
	if err != nil {
		tokens.Close()
		return nil, nil, err
	}
	u, _ := url.Parse(o.redirectURL)
	name := o.name
	if name == "" {
		name = o.addr
	}
	log = log.With("replica", name)
	s := &server{
		name: name, app: app, clientID: o.app.clientID, redirectURL: o.redirectURL,
		scopes: scopeList(o.scopes), apiURL: o.apiURL, api: hc,
		tokens: tokens, records: newRecords(tokens.store, recSeal, o.store.storeTimeout()), cookies: cookies,
		secure: u.Scheme == "https", log: log,
	}
	return s, tokens.Close, nil
}

// serveUntil serves h on ln until ctx is done, then shuts down gracefully
// (requests in progress get up to ten seconds).
func serveUntil(ctx context.Context, ln net.Listener, h http.Handler, certFile, keyFile string) error {
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: time.Minute, IdleTimeout: 2 * time.Minute}
	done := make(chan error, 1)
	go func() {
		if certFile != "" {
			done <- hs.ServeTLS(ln, certFile, keyFile)
		} else {
			done <- hs.Serve(ln)
		}
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := hs.Shutdown(sctx)
	if serr := <-done; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	if err != nil {
		return err
	}
	return ctx.Err()
}
