package dcachetest

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"

	"github.com/msalcache/msalcache/distributed"
)

// Run runs every behaviour test over stores from newStore.
func Run(t *testing.T, newStore NewStore) {
	for name, f := range map[string]func(*testing.T, NewStore){
		"SharedClient": SharedClient,
		"Daemon":       Daemon,
		"Isolation":    Isolation,
	} {
		t.Run(name, func(t *testing.T) { f(t, newStore) })
	}
}

// SharedClient: one confidential client shared by 32 goroutines serving 200
// users gets no failure and never another user's token, and asks the
// identity provider for nothing (every token is cached).
func SharedClient(t *testing.T, newStore NewStore) {
	const users, goroutines, calls = 200, 32, 40
	idp := IDP(t)
	ctx := Ctx(t)
	c := NewCache(t, newStore(t))
	app := WebApp(t, idp, c)
	accounts := SignInAll(t, ctx, idp, app, users)
	before := idp.Requests()
	errs := Hammer(ctx, app, accounts, goroutines, calls)
	if len(errs) > 0 {
		t.Errorf("%d of %d silent calls failed; first: %v", len(errs), goroutines*calls, errs[0])
	}
	if d := idp.Requests().Sub(before); d.Token != 0 {
		t.Errorf("the silent calls made %d token requests, want 0 (every token was cached)", d.Token)
	}
	t.Logf("stats %+v", c.Stats())
}

// Daemon: client credentials for 20 tenants on one shared client: after
// the first token of each tenant, every call is a cache hit.
func Daemon(t *testing.T, newStore NewStore) {
	const tenants, goroutines, calls = 20, 16, 40
	idp := IDP(t)
	ctx := Ctx(t)
	for i := range tenants {
		if _, err := idp.AddTenant(fmt.Sprintf("tenant-%02d", i)); err != nil {
			t.Fatal(err)
		}
	}
	c := NewCache(t, newStore(t))
	app := Client(t, idp, DaemonID, "daemon-secret", idp.Origin()+"/tenant-00", c)
	for i := range tenants {
		if _, err := app.AcquireTokenByCredential(ctx, DaemonScope, confidential.WithTenantID(fmt.Sprintf("tenant-%02d", i))); err != nil {
			t.Fatal(err)
		}
	}
	before := idp.Requests()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures int
	for g := range goroutines {
		wg.Go(func() {
			for n := range calls {
				tenant := fmt.Sprintf("tenant-%02d", (g+n)%tenants)
				if _, err := app.AcquireTokenByCredential(ctx, DaemonScope, confidential.WithTenantID(tenant)); err != nil {
					mu.Lock()
					failures++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if failures > 0 {
		t.Errorf("%d calls failed", failures)
	}
	if d := idp.Requests().Sub(before); d.ClientCredentialsGrant != 0 {
		t.Errorf("%d of %d cached tokens were missed (each a token request)", d.ClientCredentialsGrant, goroutines*calls)
	}
}

// Isolation: each stored partition holds only its own user's entries,
// whatever MSAL's memory holds, and no store key names a user, tenant or
// client.
func Isolation(t *testing.T, newStore NewStore) {
	idp := IDP(t)
	ctx := Ctx(t)
	rec := NewRecorder(newStore(t))
	c := NewCache(t, rec)
	app := WebApp(t, idp, c)
	accounts := SignInAll(t, ctx, idp, app, 10)
	if errs := Hammer(ctx, app, accounts, 4, 20); len(errs) > 0 {
		t.Fatal(errs[0])
	}
	daemon := Client(t, idp, DaemonID, "daemon-secret", "", c)
	if _, err := daemon.AcquireTokenByCredential(ctx, DaemonScope); err != nil {
		t.Fatal(err)
	}
	reader := NewCache(t, newStore(t))
	for _, a := range accounts {
		homes := homesOf(Partition(t, ctx, reader, a.HomeAccountID))
		if len(homes) != 1 || !homes[a.HomeAccountID] {
			t.Errorf("partition %s holds entries of %v", a.HomeAccountID, homes)
		}
	}
	app2 := DaemonID + "_" + idp.Tenant() + "_AppTokenCache"
	if homes := homesOf(Partition(t, ctx, reader, app2)); len(homes) != 1 || !homes[""] {
		t.Errorf("the app partition holds entries of %v", homes)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for key := range rec.Keys {
		if !strings.HasPrefix(key, distributed.DefaultKeyPrefix) {
			t.Errorf("store key %q lacks the prefix", key)
		}
		for _, secret := range []string{idp.TenantID(), idp.Tenant(), WebClientID, DaemonID, "user0", accounts[0].HomeAccountID[:8]} {
			if strings.Contains(strings.ToLower(key), strings.ToLower(secret)) {
				t.Errorf("store key %q names %q", key, secret)
			}
		}
	}
}
