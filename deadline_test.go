package msalcache

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/public"

	"github.com/msalcache/msalcache/internal/testdir"
)

// passwordSignIn signs username in with the password grant: one token request, no
// device code polling, so it fits in a short deadline.
func passwordSignIn(ctx context.Context, app public.Client, username string, scopes ...string) (public.AuthResult, error) {
	//lint:ignore SA1019 the password grant signs test users in without the device code wait
	return app.AcquireTokenByUsernamePassword(ctx, scopes, username, "pw")
}

// TestCorruptFileShortDeadline: the file turns unreadable after the Cache
// read a good one, and every call has a deadline shorter than the wait for
// a writer that rewrites the file in place (WithLockTimeout, or a short
// context). Reading the cache never fails, and within that wait's bound the
// file is taken for corrupt: it is treated as empty, a copy is kept, and
// sign-in and silent calls work again, all with the short deadline.
func TestCorruptFileShortDeadline(t *testing.T) {
	const short = 500 * time.Millisecond
	for _, tc := range []struct {
		name string
		opts []Option
		ctx  func() (context.Context, context.CancelFunc)
	}{
		{"WithLockTimeout", []Option{WithLockTimeout(short)}, func() (context.Context, context.CancelFunc) {
			return context.WithCancel(context.Background()) // no deadline: the lock timeout bounds each call
		}},
		{"short ctx", nil, func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), short)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startIDP(t)
			path := filepath.Join(testdir.New(t), "msal.cache")
			app := mustApp(t, s, openCache(t, path, plaintextMode, tc.opts...))
			if _, err := passwordSignIn(testCtx(t), app, "before@contoso.example", scope("before")); err != nil {
				t.Fatal(err)
			}
			garbage := []byte("\x00this cache file was damaged")
			if err := os.WriteFile(path, garbage, 0o600); err != nil {
				t.Fatal(err)
			}

			start := time.Now()
			var readFailures, signInFailures int
			var lastErr error
			signedIn := false
			for !signedIn && time.Since(start) < fluxWait+5*time.Second {
				ctx, cancel := tc.ctx()
				if _, err := app.Accounts(ctx); err != nil {
					readFailures++
					lastErr = err
				}
				cancel()
				ctx, cancel = tc.ctx()
				if _, err := passwordSignIn(ctx, app, "after@contoso.example", scope("after")); err != nil {
					signInFailures++
					lastErr = err
				} else {
					signedIn = true
				}
				cancel()
			}
			t.Logf("after %v: %d reads and %d sign-ins failed; signed in: %v; last error: %v",
				time.Since(start).Round(time.Millisecond), readFailures, signInFailures, signedIn, lastErr)
			if readFailures > 0 {
				t.Errorf("%d calls that only read the cache failed (last: %v)", readFailures, lastErr)
			}
			if !signedIn {
				t.Fatalf("no sign-in succeeded in %v after the file turned unreadable (last error: %v)", time.Since(start), lastErr)
			}
			if d := time.Since(start); d > fluxWait+2*short+time.Second {
				t.Errorf("the first sign-in succeeded %v after the file turned unreadable; want about %v", d, fluxWait)
			}

			ctx, cancel := tc.ctx()
			defer cancel()
			accounts, err := app.Accounts(ctx)
			if err != nil || len(accounts) != 1 || accounts[0].PreferredUsername != "after@contoso.example" {
				t.Fatalf("accounts after the sign-in: %v, %v; want the new user alone", accounts, err)
			}
			tokens := s.Requests().Token
			if _, err := app.AcquireTokenSilent(ctx, []string{scope("after")}, public.WithSilentAccount(accounts[0])); err != nil {
				t.Errorf("silent call after the sign-in: %v", err)
			}
			if n := s.Requests().Token - tokens; n != 0 {
				t.Errorf("the silent call made %d token requests; want it served from the cache", n)
			}
			if copies := quarantined(t, path); len(copies) != 1 {
				t.Errorf("copies of the unreadable file: %v; want one", copies)
			} else if kept, err := os.ReadFile(copies[0]); err != nil || !bytes.Equal(kept, garbage) {
				t.Errorf("the copy does not hold the unreadable file: %q, %v", kept, err)
			}
			fresh, err := mustApp(t, s, openCache(t, path, plaintextMode)).Accounts(testCtx(t))
			if err != nil || len(fresh) != 1 {
				t.Errorf("a new process sees accounts %v, %v; want the new user", fresh, err)
			}
		})
	}
}
