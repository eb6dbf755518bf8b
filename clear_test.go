package msalcache

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/cache"
	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/public"

	"github.com/msalcache/msalcache/internal/testdir"
)

// signedOut fails t unless nobody is signed in to the cache at path, as a
// new process sees it: Clear is final.
func signedOut(t *testing.T, s *idp, path, when string) {
	t.Helper()
	if _, err := os.Stat(path); err == nil {
		snap := readCacheJSON(t, openCache(t, path, plaintextMode))
		if n := len(snap.Sections["RefreshToken"]) + len(snap.Sections["Account"]); n > 0 {
			t.Fatalf("%s: the file holds %d refresh tokens and %d accounts after Clear returned",
				when, len(snap.Sections["RefreshToken"]), len(snap.Sections["Account"]))
		}
	}
	accounts, err := mustApp(t, s, openCache(t, path, plaintextMode)).Accounts(testCtx(t))
	if err != nil || len(accounts) != 0 {
		t.Fatalf("%s: a new process sees accounts %v, %v; want none", when, accounts, err)
	}
}

// TestReplaceDuringClear: a Replace reads the file without the lock, then a
// Clear of the same Cache removes the file and returns, then the Replace
// records what it read. The signed-out tokens must not come back: not to
// the MSAL client (its silent call finds no account), and not to the file
// through that client's next Export.
func TestReplaceDuringClear(t *testing.T) {
	s := startIDP(t)
	path := filepath.Join(testdir.New(t), "msal.cache")
	ctx := testCtx(t)
	c := openCache(t, path, plaintextMode)
	x := mustApp(t, s, c)
	res, err := passwordSignIn(ctx, x, "user@contoso.example", scope("a"))
	if err != nil {
		t.Fatal(err)
	}
	// Another process refreshes the user's tokens: x's next Replace reads
	// the file.
	y := mustApp(t, s, openCache(t, path, plaintextMode))
	if _, err := y.AcquireTokenSilent(ctx, []string{scope("b")}, public.WithSilentAccount(res.Account)); err != nil {
		t.Fatal(err)
	}

	cleared := false
	c.beforeRecord = func() {
		c.beforeRecord = nil // this goroutine only: runs once
		if err := c.Clear(ctx); err != nil {
			t.Error(err)
		}
		cleared = true
	}
	_, err = x.AcquireTokenSilent(ctx, []string{scope("c")}, public.WithSilentAccount(res.Account))
	if !cleared {
		t.Fatal("the Replace did not read the file: the interleaving was not staged")
	}
	if err == nil {
		t.Error("a silent call whose cache read began before a Clear got a token after the Clear returned")
	}
	signedOut(t, s, path, "after the silent call")
	// x's next write must not bring the cleared user back either.
	if _, err := passwordSignIn(ctx, x, "other@contoso.example", scope("d")); err != nil {
		t.Fatal(err)
	}
	accounts, err := mustApp(t, s, openCache(t, path, plaintextMode)).Accounts(ctx)
	if err != nil || len(accounts) != 1 || accounts[0].PreferredUsername != "other@contoso.example" {
		t.Errorf("after another user signed in on the same client: accounts %v, %v; want that user alone", accounts, err)
	}
}

// refreshTarget stands for an MSAL cache object that, after each Replace,
// redeems the refresh tokens it was handed: it changes their secrets, as
// MSAL does with a rotated refresh token, and its next Export carries them.
type refreshTarget struct{ countingTarget }

func (r *refreshTarget) refresh(round int) {
	var top map[string]map[string]map[string]any
	if json.Unmarshal(r.data, &top) != nil {
		return
	}
	for _, rt := range top["RefreshToken"] {
		rt["secret"] = fmt.Sprint("refreshed-", round)
	}
	r.data, _ = json.Marshal(top)
}

// TestReplaceDuringClearStress: Replace races Clear of the same Cache, at
// random offsets, many times; another process signs a user in before each
// round, so every Replace reads the file. After both returned, the object
// refreshes the refresh tokens it holds and exports: whatever the
// interleaving, nothing of the cleared cache comes back.
func TestReplaceDuringClearStress(t *testing.T) {
	path := filepath.Join(testdir.New(t), "msal.cache")
	ctx := testCtx(t)
	c := openCache(t, path, plaintextMode)
	other := openCache(t, path, plaintextMode)
	const rounds = 300
	raced := 0
	for i := range rounds {
		writer := &countingTarget{data: fmt.Appendf(nil,
			`{"Account":{"u%d":{"username":"u%d"}},"RefreshToken":{"rt%d":{"secret":"before-%d"}}}`, i, i, i, i)}
		if err := other.Export(ctx, writer, cache.ExportHints{}); err != nil {
			t.Fatal(err)
		}
		obj := &refreshTarget{}
		var wg sync.WaitGroup
		wg.Go(func() {
			if err := c.Replace(ctx, obj, cache.ReplaceHints{}); err != nil {
				t.Error(err)
			}
		})
		wg.Go(func() {
			time.Sleep(time.Duration(rand.IntN(300)) * time.Microsecond)
			if err := c.Clear(ctx); err != nil {
				t.Error(err)
			}
		})
		wg.Wait()
		if bytes.Contains(obj.data, []byte("RefreshToken")) {
			raced++ // read before the Clear
		}
		obj.refresh(i)
		if err := c.Export(ctx, obj, cache.ExportHints{}); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(path); err == nil {
			if rts := readCacheJSON(t, c).Sections["RefreshToken"]; len(rts) > 0 {
				t.Fatalf("round %d: after Clear returned, the file holds the refresh tokens %v", i, rts)
			}
		}
	}
	t.Logf("%d of %d Replace calls handed over the cache as it was before the Clear", raced, rounds)
}
