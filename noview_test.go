package msalcache

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/cache"
	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/public"

	"github.com/msalcache/msalcache/internal/testdir"
)

// notWritten is what Export's error says when it could not write entries
// of an object it has no view of.
const notWritten = "were not written: the file holds them with other values"

// TestExportWithoutViewNeverDropsSilently: an Export of an object this
// Cache has no view of (a value, or a pointer never passed to Replace or
// Export) that holds an entry the file holds with another value cannot
// tell a change from a stale copy: the file's value stays, and Export
// says so in an error instead of returning nil. Entries the file lacks
// are added all the same; an object that only adds entries gets nil; and
// the error names sections and counts, never keys or secrets.
func TestExportWithoutViewNeverDropsSilently(t *testing.T) {
	const file = `{"AccessToken":{"k1":{"secret":"file-1"},"k2":{"secret":"file-2"}},"Extra":"x"}`
	const exported = `{"AccessToken":{"k1":{"secret":"changed-1"},"k2":{"secret":"file-2"},"k3":{"secret":"new-3"}},"Extra":"y"}`
	targets := map[string]func() cache.Marshaler{
		"value":                  func() cache.Marshaler { return bytesTarget(exported) },
		"pointer never replaced": func() cache.Marshaler { return &countingTarget{data: []byte(exported)} },
	}
	for name, target := range targets {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(testdir.New(t), "msal.cache")
			if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
				t.Fatal(err)
			}
			c := openCache(t, path, plaintextMode)
			ctx := testCtx(t)
			m := target()
			for try := range 2 { // the same again: still not written, still said
				err := c.Export(ctx, m, cache.ExportHints{})
				if err == nil || !strings.Contains(err.Error(), "2 entries of the exported cache (AccessToken: 1, top-level values: 1) "+notWritten) {
					t.Fatalf("Export %d of an object without a view that changed an entry the file holds: %v; want an error saying 2 entries were not written", try, err)
				}
				for _, secret := range []string{"file-1", "changed-1", "new-3"} {
					if strings.Contains(err.Error(), secret) {
						t.Fatalf("the error quotes the secret %q: %v", secret, err)
					}
				}
				snap := readCacheJSON(t, c)
				at := snap.Sections["AccessToken"]
				if !strings.Contains(at["k1"], "file-1") || !strings.Contains(at["k2"], "file-2") || !strings.Contains(at["k3"], "new-3") || snap.Scalars["Extra"] != `"x"` {
					t.Fatalf("file after Export %d: %v %v; want the file's k1, k2 and Extra, and the new k3", try, at, snap.Scalars)
				}
			}
		})
	}
	t.Run("only additions", func(t *testing.T) {
		path := filepath.Join(testdir.New(t), "msal.cache")
		if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
			t.Fatal(err)
		}
		c := openCache(t, path, plaintextMode)
		m := bytesTarget(`{"AccessToken":{"k1":{"secret":"file-1"},"k4":{"secret":"new-4"}}}`)
		if err := c.Export(testCtx(t), m, cache.ExportHints{}); err != nil {
			t.Fatalf("Export of a value that only adds an entry: %v", err)
		}
		if at := readCacheJSON(t, c).Sections["AccessToken"]; len(at) != 3 || !strings.Contains(at["k4"], "new-4") {
			t.Errorf("file after the Export: %v; want k1, k2 and the new k4", at)
		}
	})
}

// teeAccessor is a cache accessor an app may write while it moves from a
// token store of its own to msalcache: MSAL loads the old store, and every
// save goes to both. msalcache sees MSAL's cache object in Export only.
type teeAccessor struct {
	old []byte // the old store
	c   *Cache
}

func (a *teeAccessor) Replace(_ context.Context, u cache.Unmarshaler, _ cache.ReplaceHints) error {
	if a.old == nil {
		return nil
	}
	return u.Unmarshal(a.old)
}

func (a *teeAccessor) Export(ctx context.Context, m cache.Marshaler, h cache.ExportHints) error {
	b, err := m.Marshal()
	if err != nil {
		return err
	}
	a.old = b
	return a.c.Export(ctx, m, h)
}

// TestRealMSALExportWithoutView: a real MSAL Go client whose saves reach
// msalcache through a teeAccessor signs in a user whom the msalcache file
// already holds (signed in earlier through msalcache). Its new tokens have
// the keys of the file's: msalcache cannot tell them from stale copies,
// keeps the file's, and the sign-in fails with an error that says so —
// never a success whose tokens the next process does not find.
func TestRealMSALExportWithoutView(t *testing.T) {
	s := startIDP(t)
	path := filepath.Join(testdir.New(t), "msal.cache")
	ctx := testCtx(t)
	s.SetNextUser("alice@contoso.example")
	first := mustLogin(t, mustApp(t, s, openCache(t, path, plaintextMode)), scope("read"))

	tee := &teeAccessor{c: openCache(t, path, plaintextMode)}
	s.SetNextUser("alice@contoso.example")
	second, err := login(ctx, mustApp(t, s, tee), scope("read"))
	if err == nil {
		if second.AccessToken == first.AccessToken {
			t.Fatal("the second sign-in got the first one's access token: the test does not change a token")
		}
		fresh := mustApp(t, s, openCache(t, path, plaintextMode))
		accounts, err := fresh.Accounts(ctx)
		if err != nil || len(accounts) != 1 {
			t.Fatalf("accounts after the sign-in: %v, %v", accounts, err)
		}
		res, err := fresh.AcquireTokenSilent(ctx, []string{scope("read")}, public.WithSilentAccount(accounts[0]))
		if err != nil || res.AccessToken != second.AccessToken {
			t.Fatalf("the sign-in through the tee accessor succeeded (its Export returned nil), but a new process gets another access token than it got (%v): its tokens were not written", err)
		}
		return
	}
	if !strings.Contains(err.Error(), notWritten) {
		t.Fatalf("the sign-in through the tee accessor failed, but not with the error that says why: %v", err)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatal(err)
	}
	t.Logf("the sign-in through the tee accessor: %v", err)
	fresh := mustApp(t, s, openCache(t, path, plaintextMode))
	accounts, err := fresh.Accounts(ctx)
	if err != nil || len(accounts) != 1 {
		t.Fatalf("accounts after the failed sign-in: %v, %v", accounts, err)
	}
	if res, err := fresh.AcquireTokenSilent(ctx, []string{scope("read")}, public.WithSilentAccount(accounts[0])); err != nil || res.AccessToken != first.AccessToken {
		t.Errorf("after the refused Export a new process gets %v; want the token the file held", err)
	}
}
