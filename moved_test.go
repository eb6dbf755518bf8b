package msalcache

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/public"

	"github.com/msalcache/msalcache/internal/testdir"
)

// TestCacheFileMovedAway: the cache file is renamed away (mv, a backup
// tool) and another process signs in, writing a new file at the path. A
// client whose Cache had read the old file gets the new file's tokens on
// its next silent call, with no request to the identity provider.
func TestCacheFileMovedAway(t *testing.T) {
	s := startIDP(t)
	path := filepath.Join(testdir.New(t), "msal.cache")
	ctx := testCtx(t)
	app := mustApp(t, s, openCache(t, path, plaintextMode))
	first := mustLogin(t, app, scope("a"))
	// Past a tick of the file system's clock the Cache keeps the file open
	// and trusts it (persistence's watcher) until something changes.
	time.Sleep(300 * time.Millisecond)
	for range 2 {
		if _, err := app.AcquireTokenSilent(ctx, []string{scope("a")}, public.WithSilentAccount(first.Account)); err != nil {
			t.Fatal(err)
		}
	}

	if err := os.Rename(path, path+".bak"); err != nil {
		t.Fatal(err)
	}
	// Another process (another Cache and client) signs in for another scope.
	second := mustLogin(t, mustApp(t, s, openCache(t, path, plaintextMode)), scope("b"))
	tokens := s.Requests().Token

	res, err := app.AcquireTokenSilent(ctx, []string{scope("b")}, public.WithSilentAccount(second.Account))
	if err != nil {
		t.Fatalf("silent call for the account signed in after the file was moved away: %v (the old file is still trusted)", err)
	}
	if res.AccessToken != second.AccessToken || s.Requests().Token != tokens {
		t.Errorf("the silent call after the file was moved away and rewritten did not use the new file's token (token requests %d → %d): the old file is still trusted",
			tokens, s.Requests().Token)
	}
}
