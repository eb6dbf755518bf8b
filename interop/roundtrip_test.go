package interop

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/public"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/internal/fakeidp"
	"github.com/msalcache/msalcache/internal/testdir"
)

// TestRealMSALCacheBothWays: a real MSAL Go client signs in through
// msalcache against a local identity provider; msal-node loads that cache
// (the account and its token). msal-node then adds tokens and rewrites the
// file in its own serialization; a fresh MSAL Go client on msalcache still
// finds the account, gets its token silently without asking the identity
// provider, redeems the refresh token for a new scope, and Node's entries
// survive that write.
func TestRealMSALCacheBothWays(t *testing.T) {
	peer := requireNode(t)
	idp, err := fakeidp.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(idp.Close)
	path := filepath.Join(testdir.New(t), "msal.cache")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	newApp := func() public.Client {
		t.Helper()
		c, err := msalcache.New(path, msalcache.WithPlaintext())
		if err != nil {
			t.Fatal(err)
		}
		app, err := public.New(clientID, public.WithAuthority(idp.Authority()),
			public.WithInstanceDiscovery(false), public.WithHTTPClient(idp.HTTPClient()), public.WithCache(c))
		if err != nil {
			t.Fatal(err)
		}
		return app
	}

	idp.SetNextUser("alice@contoso.example")
	dc, err := newApp().AcquireTokenByDeviceCode(ctx, []string{"api://interop/read"})
	if err != nil {
		t.Fatal(err)
	}
	login, err := dc.AuthenticationResult(ctx)
	if err != nil {
		t.Fatal(err)
	}

	// Node reads what MSAL Go wrote.
	d := nodeDump(t, peer, path)
	if !slices.Equal(d.Usernames, []string{"alice@contoso.example"}) {
		t.Errorf("msal-node loads accounts %v from MSAL Go's cache, want alice", d.Usernames)
	}
	if !slices.Equal(d.HomeAccountIDs, []string{login.Account.HomeAccountID}) {
		t.Errorf("msal-node's getAllAccounts returns %v from MSAL Go's cache, want %s", d.HomeAccountIDs, login.Account.HomeAccountID)
	}
	if !slices.Contains(d.Secrets, login.AccessToken) {
		t.Errorf("msal-node does not find MSAL Go's access token (it has %d)", len(d.Secrets))
	}

	// Node writes; MSAL Go reads what Node wrote.
	p := startProc(t, "node write", nodeCmd(peer, nil, "write", path, "n", "3"))
	if err := p.wait(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	app := newApp()
	accounts, err := app.Accounts(ctx)
	if err != nil || len(accounts) != 1 || accounts[0].PreferredUsername != "alice@contoso.example" {
		t.Fatalf("MSAL Go after Node rewrote the cache: accounts %v, %v; want alice", accounts, err)
	}
	before := idp.Requests()
	res, err := app.AcquireTokenSilent(ctx, []string{"api://interop/read"}, public.WithSilentAccount(accounts[0]))
	if err != nil || res.AccessToken != login.AccessToken {
		t.Errorf("silent token after Node rewrote the cache: %v; want the cached one", err)
	}
	if got := idp.Requests(); got.Token != before.Token {
		t.Errorf("MSAL Go asked the identity provider %d times for a token it had cached", got.Token-before.Token)
	}
	if _, err := app.AcquireTokenSilent(ctx, []string{"api://interop/write"}, public.WithSilentAccount(accounts[0])); err != nil {
		t.Fatalf("redeeming the refresh token Node rewrote: %v", err)
	}
	if n := idp.Requests().RefreshTokenGrant; n != 1 {
		t.Errorf("refresh token grants = %d, want 1", n)
	}

	// msalcache's write kept Node's entries, and Node reads the new token.
	doc := loadMSAL(t, ctx, path)
	for i := range 3 {
		if _, ok := doc.section("AccessToken")[nodeKey("n", i)]; !ok {
			t.Errorf("Node's entry %d is gone after MSAL Go wrote through msalcache", i)
		}
	}
	if d := nodeDump(t, peer, path); len(d.Secrets) != 5 {
		t.Errorf("msal-node loads %d access tokens, want 5 (MSAL Go's 2, its own 3)", len(d.Secrets))
	}
}
