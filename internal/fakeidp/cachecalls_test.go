package fakeidp

import (
	"context"
	"sync"
	"testing"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/cache"
	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/public"
)

// countingCache is a cache.ExportReplace that keeps the blob in memory and
// counts MSAL's calls.
type countingCache struct {
	mu               sync.Mutex
	data             []byte
	replace, export  int
	replaceUnmarshal int // Replace calls that had data to unmarshal
}

type cacheCalls struct{ Replace, Export int }

func (c *countingCache) Replace(ctx context.Context, u cache.Unmarshaler, _ cache.ReplaceHints) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.replace++
	if c.data == nil {
		return nil
	}
	c.replaceUnmarshal++
	return u.Unmarshal(c.data)
}

func (c *countingCache) Export(ctx context.Context, m cache.Marshaler, _ cache.ExportHints) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.export++
	data, err := m.Marshal()
	if err != nil {
		return err
	}
	c.data = data
	return nil
}

func (c *countingCache) calls() cacheCalls {
	c.mu.Lock()
	defer c.mu.Unlock()
	return cacheCalls{c.replace, c.export}
}

// TestMSALCacheCalls records when MSAL Go calls Replace and Export, the
// facts the persistent cache is designed around.
func TestMSALCacheCalls(t *testing.T) {
	s := start(t)
	cc := &countingCache{}
	app := newApp(t, s, cc)
	ctx := testCtx(t)

	step := func(name string, want cacheCalls, f func()) {
		t.Helper()
		before := cc.calls()
		f()
		after := cc.calls()
		got := cacheCalls{after.Replace - before.Replace, after.Export - before.Export}
		t.Logf("%-40s Replace %d, Export %d", name, got.Replace, got.Export)
		if got != want {
			t.Errorf("%s: %+v, want %+v", name, got, want)
		}
	}

	var dc public.DeviceCode
	step("AcquireTokenByDeviceCode (no token yet)", cacheCalls{}, func() {
		var err error
		if dc, err = app.AcquireTokenByDeviceCode(ctx, scopeRead); err != nil {
			t.Fatal(err)
		}
	})
	var res public.AuthResult
	step("DeviceCode.AuthenticationResult", cacheCalls{Replace: 1, Export: 1}, func() {
		var err error
		if res, err = dc.AuthenticationResult(ctx); err != nil {
			t.Fatal(err)
		}
	})
	silent := func(scopes []string, account public.Account) error {
		_, err := app.AcquireTokenSilent(ctx, scopes, public.WithSilentAccount(account))
		return err
	}
	step("AcquireTokenSilent, cached token", cacheCalls{Replace: 1}, func() {
		if err := silent(scopeRead, res.Account); err != nil {
			t.Fatal(err)
		}
	})
	step("AcquireTokenSilent, new scope (refresh)", cacheCalls{Replace: 2, Export: 1}, func() {
		if err := silent(scopeWrite, res.Account); err != nil {
			t.Fatal(err)
		}
	})
	step("Accounts", cacheCalls{Replace: 1}, func() {
		if accs, err := app.Accounts(ctx); err != nil || len(accs) != 1 {
			t.Fatalf("Accounts() = %v, %v", accs, err)
		}
	})
	step("RemoveAccount", cacheCalls{Replace: 1, Export: 1}, func() {
		if err := app.RemoveAccount(ctx, res.Account); err != nil {
			t.Fatal(err)
		}
	})
	step("RemoveAccount again (nothing to remove)", cacheCalls{Replace: 1, Export: 1}, func() {
		if err := app.RemoveAccount(ctx, res.Account); err != nil {
			t.Fatal(err)
		}
	})
	step("AcquireTokenSilent, removed account", cacheCalls{Replace: 1}, func() {
		if err := silent(scopeRead, res.Account); err == nil {
			t.Fatal("silent call for a removed account succeeded")
		}
	})
	step("AcquireTokenByUsernamePassword", cacheCalls{Replace: 1, Export: 1}, func() {
		//lint:ignore SA1019 the password grant is the fast way to sign in a chosen user in tests
		if _, err := app.AcquireTokenByUsernamePassword(ctx, scopeRead, "gina@contoso.example", "pw"); err != nil {
			t.Fatal(err)
		}
	})
	if c := s.Requests(); c.RefreshTokenGrant != 1 || c.TokensIssued != 3 {
		t.Errorf("server counts %+v", c)
	}

	// A second client that shares the blob sees the account: Replace feeds it.
	app2 := newApp(t, s, cc)
	accs, err := app2.Accounts(ctx)
	if err != nil || len(accs) != 1 || accs[0].PreferredUsername != "gina@contoso.example" {
		t.Errorf("second client: Accounts() = %v, %v", accs, err)
	}
}
