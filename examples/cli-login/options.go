package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/public"

	"github.com/msalcache/msalcache"
)

// options are the flags the commands share.
type options struct {
	clientID, tenant, authority, caFile string
	scopes, account                     string
	cachePath, keyringItem              string
	plaintext, plaintextFallback, json  bool

	tenantSet bool // --tenant or MSALCACHE_TENANT was given
}

const defaultTenant = "organizations"

// The environment variables that set flags; flags win.
const (
	envClientID          = "MSALCACHE_CLIENT_ID"
	envTenant            = "MSALCACHE_TENANT"
	envAuthority         = "MSALCACHE_AUTHORITY"
	envCAFile            = "MSALCACHE_CA_FILE"
	envScopes            = "MSALCACHE_SCOPES"
	envAccount           = "MSALCACHE_ACCOUNT"
	envCache             = "MSALCACHE_CACHE"
	envPlaintextFallback = "MSALCACHE_PLAINTEXT_FALLBACK"
	envPlaintext         = "MSALCACHE_PLAINTEXT"
	envKeyringItem       = "MSALCACHE_KEYRING_ITEM"
)

var flagEnv = []string{envClientID, envTenant, envAuthority, envCAFile, envScopes, envAccount,
	envCache, envPlaintextFallback, envPlaintext, envKeyringItem}

// flagSet is a command's flag.FlagSet whose flags default to environment
// variables.
type flagSet struct {
	fs          *flag.FlagSet
	e           *env
	usage, desc string
	envErrs     []error
}

func newFlags(e *env, name, usage, desc string) *flagSet {
	fs := flag.NewFlagSet("cli-login "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // parse errors are returned; --help is printed by parse
	return &flagSet{fs: fs, e: e, usage: "cli-login " + name + " " + usage, desc: desc}
}

func (f *flagSet) string(p *string, name, envName, def, help string) {
	if v := f.e.getenv(envName); v != "" {
		def = v
	}
	f.fs.StringVar(p, name, def, help+" (env "+envName+")")
}

func (f *flagSet) bool(p *bool, name, envName, help string) {
	def := false
	if v := f.e.getenv(envName); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			f.envErrs = append(f.envErrs, fmt.Errorf("%s=%q: want true or false", envName, v))
		}
		def = b
	}
	f.fs.BoolVar(p, name, def, help+" (env "+envName+")")
}

// appFlags are the flags that say which application signs in where.
func (f *flagSet) appFlags(o *options) {
	f.string(&o.clientID, "client-id", envClientID, "",
		"application (client) ID of your app registration (required; public client flows allowed)")
	f.string(&o.tenant, "tenant", envTenant, defaultTenant,
		"Microsoft Entra tenant: a tenant ID or domain, organizations, common or consumers")
	f.string(&o.authority, "authority", envAuthority, "",
		"custom https authority URL instead of --tenant (a local identity provider, ADFS, B2C); instance discovery is off")
	f.string(&o.caFile, "ca-file", envCAFile, "",
		"PEM file of an extra CA certificate to trust, besides the system's (a testing and demo aid, e.g. for a local identity provider)")
}

// cacheFlags are the flags that say where and how the token cache is stored.
func (f *flagSet) cacheFlags(o *options) {
	f.string(&o.cachePath, "cache", envCache, "",
		"token cache file (default "+defaultCacheHint+")")
	f.bool(&o.plaintextFallback, "plaintext-fallback", envPlaintextFallback,
		"if the platform protection is unavailable (no Secret Service: SSH, containers, WSL), store the cache unencrypted (0600) with a warning")
	f.bool(&o.plaintext, "plaintext", envPlaintext,
		"store the cache unencrypted (0600) on purpose, e.g. in CI")
	f.string(&o.keyringItem, "keyring-item", envKeyringItem, "",
		"SERVICE/ACCOUNT of the keyring item that holds the cache's key on macOS and Linux (default msalcache/token-cache-key)")
}

func (f *flagSet) scopesFlag(o *options) {
	f.string(&o.scopes, "scopes", envScopes, "User.Read", "scopes to request, separated by commas or spaces")
}

// signedIn checks the app flags, opens the app on its cache and lists the
// signed-in accounts. The caller closes the cache.
func (f *flagSet) signedIn(ctx context.Context, o *options, e *env) (public.Client, *msalcache.Cache, []public.Account, error) {
	if err := f.checkApp(o); err != nil {
		return public.Client{}, nil, nil, err
	}
	app, c, err := o.open(e)
	if err != nil {
		return public.Client{}, nil, nil, err
	}
	accounts, err := app.Accounts(ctx)
	if err != nil {
		c.Close()
		return public.Client{}, nil, nil, err
	}
	return app, c, accounts, nil
}

// parseNoArgs is parse for a command that takes flags only.
func (f *flagSet) parseNoArgs(args []string) error {
	rest, err := f.parse(args)
	if err == nil && len(rest) > 0 {
		err = usageError("unexpected argument %q", rest[0])
	}
	return err
}

// parse parses args, flags and arguments in any order, and returns the
// arguments. --help prints the help to stdout and returns flag.ErrHelp.
func (f *flagSet) parse(args []string) ([]string, error) {
	var rest []string
	for {
		if err := f.fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				f.help()
				return nil, err
			}
			return nil, usageError("%v", err)
		}
		args = f.fs.Args()
		if len(args) == 0 {
			break
		}
		rest = append(rest, args[0])
		args = args[1:]
	}
	if err := errors.Join(f.envErrs...); err != nil {
		return nil, usageError("%v", err)
	}
	return rest, nil
}

func (f *flagSet) help() {
	w := f.e.stdout
	fmt.Fprintf(w, "Usage: %s\n\n%s\n\nFlags:\n", f.usage, strings.TrimSpace(f.desc))
	f.fs.SetOutput(w)
	f.fs.PrintDefaults()
	f.fs.SetOutput(io.Discard)
	fmt.Fprint(w, "\n"+exitCodesHelp)
}

func (f *flagSet) set(name string) bool {
	found := false
	f.fs.Visit(func(fl *flag.Flag) { found = found || fl.Name == name })
	return found
}

// checkApp validates the application flags after parsing.
func (f *flagSet) checkApp(o *options) error {
	o.tenantSet = f.set("tenant") || f.e.getenv(envTenant) != ""
	if o.clientID == "" {
		return usageError("--client-id is required (or MSALCACHE_CLIENT_ID): the application (client) ID of your app registration, with public client flows allowed. To try cli-login without one, run: cli-login demo")
	}
	if o.authority != "" {
		if o.tenantSet {
			return usageError("give --tenant or --authority, not both")
		}
		u, err := url.Parse(o.authority)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			return usageError("--authority %q: want an https URL such as https://login.example.com/tenant", o.authority)
		}
	}
	return f.checkCache(o)
}

// checkCache validates the cache flags after parsing and fills in defaults.
func (f *flagSet) checkCache(o *options) error {
	if o.keyringItem != "" {
		s, a, ok := strings.Cut(o.keyringItem, "/")
		if !ok || s == "" || a == "" {
			return usageError("--keyring-item %q: want SERVICE/ACCOUNT", o.keyringItem)
		}
	}
	if o.cachePath == "" {
		p, err := defaultCachePath()
		if err != nil {
			return usageError("%v: give --cache PATH", err)
		}
		o.cachePath = p
	}
	return nil
}

const defaultCacheHint = "<user cache dir>/msalcache-cli-login/msal.cache"

func defaultCachePath() (string, error) {
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no user cache directory: %w", err)
	}
	return filepath.Join(dir, "msalcache-cli-login", "msal.cache"), nil
}

func (o *options) scopeList() []string {
	return strings.FieldsFunc(o.scopes, func(r rune) bool { return r == ',' || unicode.IsSpace(r) })
}

// cacheOptions are the msalcache options the flags ask for.
func (o *options) cacheOptions(log *slog.Logger) []msalcache.Option {
	opts := []msalcache.Option{msalcache.WithLogger(log)}
	if o.plaintext {
		opts = append(opts, msalcache.WithPlaintext())
	}
	if o.plaintextFallback {
		opts = append(opts, msalcache.WithPlaintextFallback())
	}
	if s, a, ok := strings.Cut(o.keyringItem, "/"); ok {
		opts = append(opts, msalcache.WithKeyringItem(s, a))
	}
	return opts
}

// open opens the token cache and the MSAL client on it: this is all the
// wiring msalcache needs. The caller closes the cache.
func (o *options) open(e *env) (public.Client, *msalcache.Cache, error) {
	c, err := msalcache.New(o.cachePath, o.cacheOptions(warnLogger(e.stderr))...)
	if err != nil {
		return public.Client{}, nil, fmt.Errorf("%w\n(run 'cli-login doctor' for what this machine offers, or add --plaintext-fallback)", err)
	}
	popts := []public.Option{public.WithCache(c)}
	if o.authority != "" {
		popts = append(popts, public.WithAuthority(o.authority), public.WithInstanceDiscovery(false))
	} else {
		popts = append(popts, public.WithAuthority("https://login.microsoftonline.com/"+url.PathEscape(o.tenant)))
	}
	if o.caFile != "" {
		hc, err := httpClientTrusting(o.caFile)
		if err != nil {
			c.Close()
			return public.Client{}, nil, err
		}
		popts = append(popts, public.WithHTTPClient(hc))
	}
	app, err := public.New(o.clientID, popts...)
	if err != nil {
		c.Close()
		return public.Client{}, nil, err
	}
	return app, c, nil
}

// httpClientTrusting returns an HTTP client that trusts the system's roots
// and the certificates in caFile. (SSL_CERT_FILE would do on Linux only: Go
// asks the OS on Windows and macOS.)
func httpClientTrusting(caFile string) (*http.Client, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("--ca-file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--ca-file %s: no PEM certificate in it", caFile)
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return &http.Client{Transport: t, Timeout: time.Minute}, nil
}

// warnLogger prints the library's warnings (such as the plaintext fallback)
// to w, one readable line each.
func warnLogger(w io.Writer) *slog.Logger { return slog.New(warnHandler{w: w}) }

type warnHandler struct {
	w     io.Writer
	attrs []slog.Attr
}

func (h warnHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }

func (h warnHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	fmt.Fprintf(&b, "WARNING: %s\n", strings.TrimPrefix(r.Message, "msalcache: "))
	add := func(a slog.Attr) bool {
		fmt.Fprintf(&b, "  %s: %s\n", a.Key, oneLine(a.Value.String()))
		return true
	}
	for _, a := range h.attrs {
		add(a)
	}
	r.Attrs(add)
	_, err := io.WriteString(h.w, b.String())
	return err
}

func (h warnHandler) WithAttrs(as []slog.Attr) slog.Handler {
	h.attrs = append(h.attrs[:len(h.attrs):len(h.attrs)], as...)
	return h
}

func (h warnHandler) WithGroup(string) slog.Handler { return h }
