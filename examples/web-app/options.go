package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"
)

// The environment variables that set flags; flags win.
const (
	envClientID     = "WEBAPP_CLIENT_ID"
	envTenant       = "WEBAPP_TENANT"
	envAuthority    = "WEBAPP_AUTHORITY"
	envClientSecret = "WEBAPP_CLIENT_SECRET"
	envClientCert   = "WEBAPP_CLIENT_CERT"
	envCAFile       = "WEBAPP_CA_FILE"
	envRedirectURL  = "WEBAPP_REDIRECT_URL"
	envAddr         = "WEBAPP_ADDR"
	envScopes       = "WEBAPP_SCOPES"
	envAPIURL       = "WEBAPP_API_URL"
	envKey          = "WEBAPP_KEY"
	envStore        = "WEBAPP_STORE"
	envRedis        = "WEBAPP_REDIS"
	envPostgres     = "WEBAPP_POSTGRES"
	envCacheTTL     = "WEBAPP_CACHE_TTL"
	envStoreTimeout = "WEBAPP_STORE_TIMEOUT"
	envName         = "WEBAPP_NAME"
	envTenants      = "WEBAPP_TENANTS"
	envInterval     = "WEBAPP_INTERVAL"
	envRounds       = "WEBAPP_ROUNDS"
)

// appOptions say which application signs in where, and with what credential.
type appOptions struct {
	clientID, tenant, authority string
	clientSecret, clientCert    string
	caFile                      string
	tenantSet                   bool
}

// storeOptions say where the token cache lives and how it is protected.
type storeOptions struct {
	store, redisURL string
	postgresURL     string
	key             string
	cacheTTL        time.Duration
	timeout         time.Duration // of each store call; 0: defaultStoreTimeout
}

// defaultStoreTimeout bounds each store call: Redis answers a healthy
// client far sooner, even under load, and a page must not wait long for a
// store that is out.
const defaultStoreTimeout = time.Second

// storeTimeout is o's timeout, or the default.
func (o *storeOptions) storeTimeout() time.Duration {
	if o.timeout > 0 {
		return o.timeout
	}
	return defaultStoreTimeout
}

// flagSet is a command's flag.FlagSet whose flags default to environment
// variables.
type flagSet struct {
	fs          *flag.FlagSet
	e           *env
	usage, desc string
	envErrs     []error
}

func newFlags(e *env, name, usage, desc string) *flagSet {
	fs := flag.NewFlagSet("web-app "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // parse errors are returned; --help is printed by parse
	return &flagSet{fs: fs, e: e, usage: "web-app " + name + " " + usage, desc: desc}
}

func (f *flagSet) string(p *string, name, envName, def, help string) {
	if v := f.e.getenv(envName); v != "" {
		def = v
	}
	f.fs.StringVar(p, name, def, help+" (env "+envName+")")
}

// secret is a string flag whose default from the environment is not shown in
// --help.
func (f *flagSet) secret(p *string, name, envName, help string) {
	f.fs.StringVar(p, name, "", help+" (env "+envName+"; prefer the environment)")
	if v := f.e.getenv(envName); v != "" {
		*p = v
	}
}

func (f *flagSet) duration(p *time.Duration, name, envName string, def time.Duration, help string) {
	if v := f.e.getenv(envName); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			f.envErrs = append(f.envErrs, fmt.Errorf("%s=%q: want a duration such as 1m or 8h", envName, v))
		}
		def = d
	}
	f.fs.DurationVar(p, name, def, help+" (env "+envName+")")
}

func (f *flagSet) int(p *int, name, envName string, def int, help string) {
	if v := f.e.getenv(envName); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			f.envErrs = append(f.envErrs, fmt.Errorf("%s=%q: want a number", envName, v))
		}
		def = n
	}
	f.fs.IntVar(p, name, def, help+" (env "+envName+")")
}

// appFlags are the flags that say which application signs in where.
func (f *flagSet) appFlags(o *appOptions, defTenant string) {
	f.string(&o.clientID, "client-id", envClientID, "", "application (client) ID of your app registration (required)")
	f.string(&o.tenant, "tenant", envTenant, defTenant, "Microsoft Entra tenant: a tenant ID or domain, organizations or common")
	f.string(&o.authority, "authority", envAuthority, "",
		"custom https authority URL instead of --tenant (a local identity provider, B2C); instance discovery is off")
	f.secret(&o.clientSecret, "client-secret", envClientSecret, "client secret of the app registration")
	f.string(&o.clientCert, "client-cert", envClientCert, "",
		"PEM file with the app's certificate and its unencrypted private key, instead of a secret")
	f.string(&o.caFile, "ca-file", envCAFile, "",
		"PEM file of an extra CA certificate to trust, besides the system's (a testing and demo aid)")
}

// storeFlags are the flags that say where the token cache lives.
func (f *flagSet) storeFlags(o *storeOptions) {
	f.string(&o.store, "store", envStore, "memory",
		"token cache store: memory (this process only), redis (needs --redis), postgres (needs --postgres) or redis+postgres (needs both)")
	f.string(&o.redisURL, "redis", envRedis, "",
		"Redis URL: redis://[user:pass@]host:port[/db], rediss:// for TLS, redis://h1:p1?addr=h2:p2 for a cluster; implies --store redis")
	f.string(&o.postgresURL, "postgres", envPostgres, "",
		"PostgreSQL URL: postgres://user:pass@host:port/db?sslmode=verify-full, the durable store (its tables are created when missing); "+
			"alone it implies --store postgres; beside --redis, --store redis+postgres: Redis serves reads in front of PostgreSQL, "+
			"which holds the truth, so a flushed or restarted Redis signs nobody out")
	f.secret(&o.key, "key", envKey,
		"the app's secret key: base64 of 32 random bytes (openssl rand -base64 32); seals cookies and encrypts the token cache. "+
			"Replicas must share it; a comma-separated list rotates keys (the first seals, all open)")
	f.duration(&o.cacheTTL, "cache-ttl", envCacheTTL, 0, "sliding expiry of a user's partition in the store (0: the distributed cache's default)")
	f.duration(&o.timeout, "store-timeout", envStoreTimeout, defaultStoreTimeout,
		"bound of each call to the store; a store slower than that is treated as down and pages are served from memory")
}

// parseNoArgs parses args, which hold flags only. --help prints the help to
// stdout and returns flag.ErrHelp.
func (f *flagSet) parseNoArgs(args []string) error {
	if err := f.fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			f.help()
			return err
		}
		return usageError("%v", err)
	}
	if f.fs.NArg() > 0 {
		return usageError("unexpected argument %q", f.fs.Arg(0))
	}
	if err := errors.Join(f.envErrs...); err != nil {
		return usageError("%v", err)
	}
	return nil
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
func (f *flagSet) checkApp(o *appOptions) error {
	o.tenantSet = f.set("tenant") || f.e.getenv(envTenant) != ""
	switch {
	case o.clientID == "":
		return usageError("--client-id is required (or %s): the application (client) ID of your app registration. To try web-app without one, run: web-app demo", envClientID)
	case o.clientSecret == "" && o.clientCert == "":
		return usageError("a credential is required: %s (or --client-secret) or --client-cert PEM", envClientSecret)
	case o.clientSecret != "" && o.clientCert != "":
		return usageError("give a client secret or a client certificate, not both")
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
	return nil
}

// credential returns the client credential the flags name.
func (o *appOptions) credential() (confidential.Credential, error) {
	if o.clientCert == "" {
		return confidential.NewCredFromSecret(o.clientSecret)
	}
	pem, err := os.ReadFile(o.clientCert)
	if err != nil {
		return confidential.Credential{}, fmt.Errorf("--client-cert: %w", err)
	}
	certs, key, err := confidential.CertFromPEM(pem, "")
	if err != nil {
		return confidential.Credential{}, fmt.Errorf("--client-cert %s: %w", o.clientCert, err)
	}
	return confidential.NewCredFromCert(certs, key)
}

// authorityURL is the authority MSAL is created with.
func (o *appOptions) authorityURL() string {
	if o.authority != "" {
		return o.authority
	}
	return "https://login.microsoftonline.com/" + url.PathEscape(o.tenant)
}

// httpClient is the HTTP client for the identity provider and the
// downstream API: the system's roots plus --ca-file.
func (o *appOptions) httpClient() (*http.Client, error) {
	t := http.DefaultTransport.(*http.Transport).Clone()
	// Many request goroutines call the same hosts: keep their connections
	// (the default keeps two per host, and a new TLS handshake costs more
	// than the page).
	t.MaxIdleConnsPerHost = 64
	if o.caFile != "" {
		pem, err := os.ReadFile(o.caFile)
		if err != nil {
			return nil, fmt.Errorf("--ca-file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--ca-file %s: no PEM certificate in it", o.caFile)
		}
		t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Transport: t, Timeout: 30 * time.Second}, nil
}

// newClient creates the one MSAL confidential client that every goroutine
// shares, on the distributed token cache c.
func (o *appOptions) newClient(c *tokenCache) (confidential.Client, *http.Client, error) {
	cred, err := o.credential()
	if err != nil {
		return confidential.Client{}, nil, err
	}
	hc, err := o.httpClient()
	if err != nil {
		return confidential.Client{}, nil, err
	}
	opts := []confidential.Option{confidential.WithCache(c.cache), confidential.WithHTTPClient(hc)}
	if o.authority != "" {
		opts = append(opts, confidential.WithInstanceDiscovery(false))
	}
	app, err := confidential.New(o.authorityURL(), o.clientID, cred, opts...)
	if err != nil {
		return confidential.Client{}, nil, err
	}
	return app, hc, nil
}

// checkStore validates the store flags after parsing.
func (f *flagSet) checkStore(o *storeOptions) error {
	if !f.set("store") {
		switch {
		case o.redisURL != "" && o.postgresURL != "":
			o.store = "redis+postgres"
		case o.redisURL != "":
			o.store = "redis"
		case o.postgresURL != "":
			o.store = "postgres"
		}
	}
	needs := map[string][2]bool{ // store: needs Redis, needs PostgreSQL
		"memory":         {false, false},
		"redis":          {true, false},
		"postgres":       {false, true},
		"redis+postgres": {true, true},
	}
	need, ok := needs[o.store]
	switch {
	case !ok:
		return usageError("--store %q: want memory, redis, postgres or redis+postgres", o.store)
	case need[0] && o.redisURL == "":
		return usageError("--store %s needs --redis URL (or %s)", o.store, envRedis)
	case need[1] && o.postgresURL == "":
		return usageError("--store %s needs --postgres URL (or %s)", o.store, envPostgres)
	case !need[0] && o.redisURL != "", !need[1] && o.postgresURL != "":
		return usageError("--store %s and the URLs given (--redis, --postgres): choose one", o.store)
	}
	if o.cacheTTL < 0 {
		return usageError("--cache-ttl %v: want a positive duration", o.cacheTTL)
	}
	if o.timeout <= 0 {
		return usageError("--store-timeout %v: want a positive duration", o.timeout)
	}
	return nil
}

// parseKeys decodes --key: one or more base64 keys of 32 bytes, separated by
// commas.
func parseKeys(s string) ([][]byte, error) {
	var keys [][]byte
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		var k []byte
		var err error
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
			if k, err = enc.DecodeString(part); err == nil {
				break
			}
		}
		if err != nil || len(k) != 32 {
			return nil, usageError("--key: each key must be base64 of 32 random bytes (openssl rand -base64 32)")
		}
		keys = append(keys, k)
	}
	return keys, nil
}

func scopeList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || unicode.IsSpace(r) })
}
