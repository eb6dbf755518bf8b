// Package bench compares msalcache with AzureAD's Go cache extension
// (github.com/AzureAD/microsoft-authentication-extensions-for-go/cache,
// v0.1.1, with its plaintext file accessor) on the two calls MSAL Go makes
// most: a silent token request answered from the cache, and an Export when
// nothing changed. It is a module of its own so that users of msalcache
// never download the extension.
//
//	cd bench && go test -run '^$' -bench . -benchmem
package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	azcache "github.com/AzureAD/microsoft-authentication-extensions-for-go/cache"
	"github.com/AzureAD/microsoft-authentication-extensions-for-go/cache/accessor/file"
	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/cache"
	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/public"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/internal/fakeidp"
)

const (
	clientID = "0b6d4f1e-6f0a-4c53-9a39-3f2c1d5e7a11"
	accounts = 100
)

var scopes = []string{"api://bench/read"}

// plugins are the caches compared, each on its own file.
var plugins = []struct {
	name string
	open func(b *testing.B, path string) cache.ExportReplace
}{
	{"msalcache", func(b *testing.B, path string) cache.ExportReplace {
		c, err := msalcache.New(path, msalcache.WithPlaintext())
		if err != nil {
			b.Fatal(err)
		}
		return c
	}},
	{"azure-extension", func(b *testing.B, path string) cache.ExportReplace {
		a, err := file.New(path)
		if err != nil {
			b.Fatal(err)
		}
		c, err := azcache.New(a, path+".timestamp")
		if err != nil {
			b.Fatal(err)
		}
		return c
	}},
}

// setup signs accounts users in through plugin p and returns a fresh
// client on the same file, as a later process would see it.
func setup(b *testing.B, idp *fakeidp.Server, open func(*testing.B, string) cache.ExportReplace) (public.Client, []public.Account, string) {
	b.Helper()
	path := filepath.Join(b.TempDir(), "msal.cache")
	newApp := func() public.Client {
		app, err := public.New(clientID, public.WithAuthority(idp.Authority()), public.WithInstanceDiscovery(false),
			public.WithHTTPClient(idp.HTTPClient()), public.WithCache(open(b, path)))
		if err != nil {
			b.Fatal(err)
		}
		return app
	}
	fill := newApp()
	ctx := context.Background()
	for i := range accounts {
		//lint:ignore SA1019 the password grant signs benchmark users in without the device code wait
		if _, err := fill.AcquireTokenByUsernamePassword(ctx, scopes, fmt.Sprintf("bench%d@contoso.example", i), "pw"); err != nil {
			b.Fatal(err)
		}
	}
	app := newApp()
	all, err := app.Accounts(ctx)
	if err != nil || len(all) != accounts {
		b.Fatalf("accounts = %d, %v", len(all), err)
	}
	return app, all, path
}

func startIDP(b *testing.B) *fakeidp.Server {
	idp, err := fakeidp.Start()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(idp.Close)
	return idp
}

// BenchmarkSilentHit: AcquireTokenSilent answered from the cache (100
// accounts), the call MSAL apps make most.
func BenchmarkSilentHit(b *testing.B) {
	idp := startIDP(b)
	for _, p := range plugins {
		b.Run(p.name, func(b *testing.B) {
			app, all, _ := setup(b, idp, p.open)
			ctx := context.Background()
			before := idp.Requests().Token
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if _, err := app.AcquireTokenSilent(ctx, scopes, public.WithSilentAccount(all[i%len(all)])); err != nil {
					b.Fatal(err)
				}
			}
			if n := idp.Requests().Token - before; n != 0 {
				b.Fatalf("%d token requests: not a cache hit", n)
			}
		})
	}
}

// BenchmarkUnchangedExport: RemoveAccount of an account that is not there,
// which makes MSAL Go call Replace and then Export with nothing changed.
// writes/op counts how often the cache file was rewritten.
func BenchmarkUnchangedExport(b *testing.B) {
	idp := startIDP(b)
	for _, p := range plugins {
		b.Run(p.name, func(b *testing.B) {
			app, _, path := setup(b, idp, p.open)
			ctx := context.Background()
			nobody := public.Account{HomeAccountID: "nobody.nowhere", Environment: "127.0.0.1"}
			last := stat(b, path)
			writes := 0
			b.ReportAllocs()
			for b.Loop() {
				if err := app.RemoveAccount(ctx, nobody); err != nil {
					b.Fatal(err)
				}
				if now := stat(b, path); !os.SameFile(now, last) || !now.ModTime().Equal(last.ModTime()) {
					writes++
					last = now
				}
			}
			b.ReportMetric(float64(writes)/float64(b.N), "writes/op")
		})
	}
}

func stat(b *testing.B, path string) os.FileInfo {
	fi, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	return fi
}
