package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"
)

// daemonOptions are the flags of the daemon command.
type daemonOptions struct {
	app      appOptions
	store    storeOptions
	tenants  string
	scopes   string
	interval time.Duration
	rounds   int
}

func cmdDaemon(ctx context.Context, e *env, args []string) error {
	var o daemonOptions
	f := newFlags(e, "daemon", "[flags]", `
Runs a daemon that gets an app token (client credentials) for each of several
tenants every interval, on one shared MSAL client: each tenant's tokens are
one partition of the distributed cache, so replicas of the daemon on one Redis
share them, and a token is requested from the identity provider only when the
cached one is about to expire. It prints one line per tenant per round. When
Redis is down, the daemon goes on with the tokens it holds in memory and writes
new ones back when Redis returns.

Example:
  export WEBAPP_CLIENT_ID=... WEBAPP_CLIENT_SECRET=... WEBAPP_KEY=$(openssl rand -base64 32)
  web-app daemon --tenants contoso.onmicrosoft.com,fabrikam.onmicrosoft.com --redis redis://127.0.0.1:6379`)
	f.appFlags(&o.app, "")
	f.storeFlags(&o.store)
	f.string(&o.tenants, "tenants", envTenants, "", "the tenants to get app tokens for, separated by commas (required)")
	f.string(&o.scopes, "scopes", envScopes, "https://graph.microsoft.com/.default", "the scope of the app tokens (a resource's /.default)")
	f.duration(&o.interval, "interval", envInterval, time.Minute, "time between rounds")
	f.int(&o.rounds, "rounds", envRounds, 0, "stop after this many rounds (0: run until stopped)")
	if err := f.parseNoArgs(args); err != nil {
		return err
	}
	tenants := scopeList(o.tenants)
	if len(tenants) == 0 {
		return usageError("--tenants is required (or %s): the tenants to get app tokens for", envTenants)
	}
	if o.app.tenant == "" && o.app.authority == "" {
		o.app.tenant = tenants[0] // the authority's tenant; each request names its own
	}
	if err := f.checkApp(&o.app); err != nil {
		return err
	}
	if err := f.checkStore(&o.store); err != nil {
		return err
	}
	if o.interval <= 0 || o.rounds < 0 {
		return usageError("--interval must be positive and --rounds at least 0")
	}
	keys, err := appKeys(e, &o.store)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(e.stderr, nil))
	tokens, err := openTokenCache(&o.store, keys, log, nil)
	if err != nil {
		return err
	}
	defer tokens.Close()
	app, _, err := o.app.newClient(tokens)
	if err != nil {
		return err
	}
	d := &daemon{app: app, tenants: tenants, scopes: scopeList(o.scopes), out: e.stdout, log: log}
	fmt.Fprintf(e.stdout, "web-app daemon: %d tenants every %v (%s store)\n", len(tenants), o.interval, tokens.kind)
	return d.run(ctx, o.interval, o.rounds)
}

// daemon gets app tokens for its tenants, concurrently, on one client.
type daemon struct {
	app     confidential.Client
	tenants []string
	scopes  []string
	out     io.Writer
	log     *slog.Logger
}

// run does rounds until ctx is done or rounds are over. A round's failure
// for one tenant is printed and retried next round; the daemon goes on.
func (d *daemon) run(ctx context.Context, interval time.Duration, rounds int) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for n := 1; ; n++ {
		failed := d.round(ctx, n)
		if rounds > 0 && n >= rounds {
			if failed > 0 {
				return fmt.Errorf("%d tenants failed in the last round", failed)
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// round gets a token for every tenant at once, prints a line per tenant in
// the order of --tenants, and returns how many failed.
func (d *daemon) round(ctx context.Context, n int) int {
	lines := make([]string, len(d.tenants))
	var wg sync.WaitGroup
	for i, tenant := range d.tenants {
		wg.Go(func() {
			rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			res, err := d.app.AcquireTokenByCredential(rctx, d.scopes, confidential.WithTenantID(tenant))
			if err != nil {
				lines[i] = fmt.Sprintf("round %d  %-36s  FAILED: %s", n, tenant, oneLine(err.Error()))
				return
			}
			source := "cache"
			if res.Metadata.TokenSource == confidential.TokenSourceIdentityProvider {
				source = "identity provider"
			}
			lines[i] = fmt.Sprintf("round %d  %-36s  token from %-17s  expires %s", n, tenant, source,
				res.ExpiresOn.UTC().Format(time.TimeOnly))
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return 0 // stopped: the round's errors are the stop's
	}
	failed := 0
	for _, l := range lines {
		if strings.Contains(l, "FAILED") {
			failed++
		}
		fmt.Fprintln(d.out, l)
	}
	return failed
}
