package msalcache

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/cache"
	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/public"

	"github.com/msalcache/msalcache/internal/testdir"
)

// memoryCache is the simplest ExportReplace: the serialized cache in
// memory. Benchmarks use it to fill a cache quickly.
type memoryCache struct{ data []byte }

func (m *memoryCache) Replace(_ context.Context, u cache.Unmarshaler, _ cache.ReplaceHints) error {
	if m.data == nil {
		return nil
	}
	return u.Unmarshal(m.data)
}

func (m *memoryCache) Export(_ context.Context, c cache.Marshaler, _ cache.ExportHints) error {
	var err error
	m.data, err = c.Marshal()
	return err
}

// signIn signs n users in on app (password grant: no device code wait).
func signIn(b testing.TB, app public.Client, n int) []public.Account {
	b.Helper()
	ctx := context.Background()
	var accounts []public.Account
	for i := range n {
		//lint:ignore SA1019 the password grant signs test users in without the device code wait
		res, err := app.AcquireTokenByUsernamePassword(ctx, []string{scope("bench")}, fmt.Sprintf("bench%d@contoso.example", i), "pw")
		if err != nil {
			b.Fatal(err)
		}
		accounts = append(accounts, res.Account)
	}
	return accounts
}

// BenchmarkSilentHit: AcquireTokenSilent answered from the cache, with no
// cache plugin (MSAL's memory only) and with msalcache, for caches of 1, 100
// and 1000 accounts. The difference is what msalcache costs on a hit.
func BenchmarkSilentHit(b *testing.B) {
	for _, n := range []int{1, 100, 1000} {
		s := startIDP(b)
		b.Run(fmt.Sprintf("accounts=%d/plugin=none", n), func(b *testing.B) {
			app := mustApp(b, s, nil)
			benchSilent(b, app, signIn(b, app, n))
		})
		b.Run(fmt.Sprintf("accounts=%d/plugin=msalcache", n), func(b *testing.B) {
			mem := &memoryCache{}
			fill, err := public.New(testClientID, public.WithAuthority(s.Authority()), public.WithInstanceDiscovery(false),
				public.WithHTTPClient(s.HTTPClient()), public.WithCache(mem))
			if err != nil {
				b.Fatal(err)
			}
			accounts := signIn(b, fill, n)
			path := filepath.Join(testdir.New(b), "msal.cache")
			if err := os.WriteFile(path, mem.data, 0o600); err != nil {
				b.Fatal(err)
			}
			benchSilent(b, mustApp(b, s, openCache(b, path, plaintextMode)), accounts)
		})
	}
}

func benchSilent(b *testing.B, app public.Client, accounts []public.Account) {
	ctx := context.Background()
	for i := range accounts { // warm: the first call loads the file
		if _, err := app.AcquireTokenSilent(ctx, []string{scope("bench")}, public.WithSilentAccount(accounts[i])); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, err := app.AcquireTokenSilent(ctx, []string{scope("bench")}, public.WithSilentAccount(accounts[i%len(accounts)])); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReplaceUnchanged is the cost of Replace when nothing changed,
// next to one os.Stat of the same file.
func BenchmarkReplaceUnchanged(b *testing.B) {
	path := filepath.Join(testdir.New(b), "msal.cache")
	c := openCache(b, path, plaintextMode)
	ctx := context.Background()
	target := &countingTarget{data: []byte(`{"AccessToken":{"k":{"secret":"s"}}}`)}
	if err := c.Export(ctx, target, cache.ExportHints{}); err != nil {
		b.Fatal(err)
	}
	b.Run("Replace", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := c.Replace(ctx, target, cache.ReplaceHints{}); err != nil {
				b.Fatal(err)
			}
		}
		if n := target.unmarshals.Load(); n > 1 {
			b.Fatalf("%d unmarshals", n)
		}
	})
	b.Run("os.Stat", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := os.Stat(path); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkExportGrowth: the cost of an Export that changes one access
// token, as the cache grows from 10 to 10,000 access tokens. ns/token shows
// that it grows linearly.
func BenchmarkExportGrowth(b *testing.B) {
	for _, n := range []int{10, 100, 1000, 10000} {
		b.Run(fmt.Sprintf("tokens=%d", n), func(b *testing.B) {
			path := filepath.Join(testdir.New(b), "msal.cache")
			c := openCache(b, path, plaintextMode)
			ctx := context.Background()
			entries := make([]string, n)
			for i := range entries {
				entries[i] = accessTokenJSON(i, "0")
			}
			target := &countingTarget{}
			if err := c.Replace(ctx, target, cache.ReplaceHints{}); err != nil {
				b.Fatal(err)
			}
			target.data = tokensJSON(entries)
			if err := c.Export(ctx, target, cache.ExportHints{}); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(target.data)))
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				entries[i%n] = accessTokenJSON(i%n, fmt.Sprint(i+1))
				target.data = tokensJSON(entries)
				if err := c.Export(ctx, target, cache.ExportHints{}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/token")
		})
	}
}

func accessTokenJSON(i int, secret string) string {
	return fmt.Sprintf(`"uid.utid-127.0.0.1-accesstoken-client-utid-api://x/s%d":{"home_account_id":"uid.utid","environment":"127.0.0.1","realm":"utid","credential_type":"AccessToken","client_id":"client","secret":"token-%d-%s","target":"api://x/s%d","cached_at":"1700000000","expires_on":"1700003600","extended_expires_on":"1700003600"}`, i, i, secret, i)
}

func tokensJSON(entries []string) []byte {
	return []byte(`{"AccessToken":{` + strings.Join(entries, ",") + `}}`)
}
