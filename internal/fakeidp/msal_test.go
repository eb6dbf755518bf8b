package fakeidp

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/cache"
	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/public"
)

const testClientID = "11111111-2222-3333-4444-555555555555"

var (
	scopeRead  = []string{"api://fakeidp/read"}
	scopeWrite = []string{"api://fakeidp/write"}
)

func start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	s, err := Start(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// newApp returns a real MSAL Go public client for s; c may be nil.
func newApp(t testing.TB, s *Server, c cache.ExportReplace) public.Client {
	t.Helper()
	opts := []public.Option{
		public.WithAuthority(s.Authority()),
		public.WithInstanceDiscovery(false),
		public.WithHTTPClient(s.HTTPClient()),
	}
	if c != nil {
		opts = append(opts, public.WithCache(c))
	}
	app, err := public.New(testClientID, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return app
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// login runs a whole device code login.
func login(t testing.TB, ctx context.Context, app public.Client, scopes []string) public.AuthResult {
	t.Helper()
	dc, err := app.AcquireTokenByDeviceCode(ctx, scopes)
	if err != nil {
		t.Fatal(err)
	}
	res, err := dc.AuthenticationResult(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func wantCounts(t *testing.T, what string, got, want Counts) {
	t.Helper()
	if got != want {
		t.Errorf("%s: requests\n got %+v\nwant %+v", what, got, want)
	}
}

func TestDeviceCodeLogin(t *testing.T) {
	s := start(t)
	app := newApp(t, s, nil)
	ctx := testCtx(t)

	began := time.Now()
	res := login(t, ctx, app, scopeRead)
	t.Logf("first device code login (discovery + device code + one poll): %v", time.Since(began))

	acc := res.Account
	if acc.PreferredUsername != "user1@"+UserDomain {
		t.Errorf("PreferredUsername = %q, want user1@%s", acc.PreferredUsername, UserDomain)
	}
	oid := nameUUID("oid", s.TenantID(), acc.PreferredUsername)
	if want := oid + "." + s.TenantID(); acc.HomeAccountID != want {
		t.Errorf("HomeAccountID = %q, want %q", acc.HomeAccountID, want)
	}
	if acc.LocalAccountID != oid || acc.Realm != s.Tenant() || acc.Environment != strings.TrimPrefix(s.origin, "https://") {
		t.Errorf("account = %+v", acc)
	}
	if res.AccessToken == "" || res.IDToken.Name != "user1" || res.IDToken.Audience != testClientID {
		t.Errorf("result: access token %q, id token %+v", res.AccessToken, res.IDToken)
	}
	if d := time.Until(res.ExpiresOn); d < 59*time.Minute || d > time.Hour {
		t.Errorf("ExpiresOn in %v, want about an hour", d)
	}
	wantCounts(t, "first login", s.Requests(), Counts{Discovery: 1, DeviceCode: 1, Token: 1, DeviceCodeGrant: 1, TokensIssued: 1})

	// A second login on the same client: no discovery, a new user.
	before := s.Requests()
	began = time.Now()
	res2 := login(t, ctx, app, scopeRead)
	t.Logf("second device code login: %v", time.Since(began))
	if res2.Account.PreferredUsername != "user2@"+UserDomain {
		t.Errorf("second login: %q, want user2@%s", res2.Account.PreferredUsername, UserDomain)
	}
	wantCounts(t, "second login", s.Requests().Sub(before), Counts{DeviceCode: 1, Token: 1, DeviceCodeGrant: 1, TokensIssued: 1})
}

func TestSilent(t *testing.T) {
	s := start(t)
	app := newApp(t, s, nil)
	ctx := testCtx(t)
	res := login(t, ctx, app, scopeRead)

	before := s.Requests()
	hit, err := app.AcquireTokenSilent(ctx, scopeRead, public.WithSilentAccount(res.Account))
	if err != nil {
		t.Fatal(err)
	}
	if hit.AccessToken != res.AccessToken {
		t.Error("silent call for the same scope returned another access token")
	}
	wantCounts(t, "silent, cached scope", s.Requests().Sub(before), Counts{})

	// A new scope: MSAL redeems the refresh token once, then caches the new token.
	fresh, err := app.AcquireTokenSilent(ctx, scopeWrite, public.WithSilentAccount(res.Account))
	if err != nil {
		t.Fatal(err)
	}
	if fresh.AccessToken == res.AccessToken {
		t.Error("new scope: got the old access token")
	}
	if fresh.Account.HomeAccountID != res.Account.HomeAccountID {
		t.Errorf("new scope: account %q, want %q", fresh.Account.HomeAccountID, res.Account.HomeAccountID)
	}
	wantCounts(t, "silent, new scope", s.Requests().Sub(before), Counts{Token: 1, RefreshTokenGrant: 1, TokensIssued: 1})

	again, err := app.AcquireTokenSilent(ctx, scopeWrite, public.WithSilentAccount(res.Account))
	if err != nil {
		t.Fatal(err)
	}
	if again.AccessToken != fresh.AccessToken {
		t.Error("second silent call for the new scope was not served from MSAL's cache")
	}
	// Both scopes are now cached.
	if _, err := app.AcquireTokenSilent(ctx, scopeRead, public.WithSilentAccount(res.Account)); err != nil {
		t.Fatal(err)
	}
	wantCounts(t, "after caching both scopes", s.Requests().Sub(before), Counts{Token: 1, RefreshTokenGrant: 1, TokensIssued: 1})
}

func TestShortLifetimeRefreshesEveryTime(t *testing.T) {
	// MSAL does not cache tokens that expire within five minutes.
	s := start(t, WithTokenLifetime(time.Minute))
	app := newApp(t, s, nil)
	ctx := testCtx(t)
	res := login(t, ctx, app, scopeRead)
	if d := time.Until(res.ExpiresOn); d > time.Minute || d < 50*time.Second {
		t.Errorf("ExpiresOn in %v, want about a minute", d)
	}
	before := s.Requests()
	seen := map[string]bool{res.AccessToken: true}
	for range 3 {
		r, err := app.AcquireTokenSilent(ctx, scopeRead, public.WithSilentAccount(res.Account))
		if err != nil {
			t.Fatal(err)
		}
		if seen[r.AccessToken] {
			t.Error("an access token was issued twice")
		}
		seen[r.AccessToken] = true
	}
	wantCounts(t, "three silent calls", s.Requests().Sub(before), Counts{Token: 3, RefreshTokenGrant: 3, TokensIssued: 3})
}

func TestAccountsAndRemoveAccount(t *testing.T) {
	s := start(t)
	app := newApp(t, s, nil)
	ctx := testCtx(t)
	for _, name := range []string{"alice@contoso.example", "bob@contoso.example", "alice@contoso.example"} {
		s.SetNextUser(name)
		if got := login(t, ctx, app, scopeRead).Account.PreferredUsername; got != name {
			t.Errorf("logged in as %q, want %q", got, name)
		}
	}
	accs, err := app.Accounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(accs) != 2 {
		t.Fatalf("Accounts() = %d accounts, want 2 (alice twice is one account): %+v", len(accs), accs)
	}
	var alice public.Account
	for _, a := range accs {
		if a.PreferredUsername == "alice@contoso.example" {
			alice = a
		}
	}
	before := s.Requests()
	if err := app.RemoveAccount(ctx, alice); err != nil {
		t.Fatal(err)
	}
	accs, err = app.Accounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(accs) != 1 || accs[0].PreferredUsername != "bob@contoso.example" {
		t.Errorf("after removing alice: %+v", accs)
	}
	if _, err := app.AcquireTokenSilent(ctx, scopeRead, public.WithSilentAccount(alice)); err == nil {
		t.Error("silent call for a removed account succeeded")
	}
	wantCounts(t, "Accounts, RemoveAccount, silent miss", s.Requests().Sub(before), Counts{})
}

func TestManualApproval(t *testing.T) {
	s := start(t, WithManualApproval())
	app := newApp(t, s, nil)
	ctx := testCtx(t)

	s.SetNextUser("carol@contoso.example")
	dc, err := app.AcquireTokenByDeviceCode(ctx, scopeRead)
	if err != nil {
		t.Fatal(err)
	}
	code := dc.Result.UserCode
	if p := s.Pending(); len(p) != 1 || p[0] != code {
		t.Fatalf("Pending() = %v, want [%s]", p, code)
	}
	if !strings.Contains(dc.Result.Message, code) || dc.Result.VerificationURL != s.Authority()+"/device" {
		t.Errorf("device code result: %+v", dc.Result)
	}

	type result struct {
		res public.AuthResult
		err error
	}
	done := make(chan result, 1)
	go func() {
		r, err := dc.AuthenticationResult(ctx)
		done <- result{r, err}
	}()
	// Wait until MSAL has polled and been told to wait.
	for s.Requests().Pending == 0 {
		select {
		case r := <-done:
			t.Fatalf("login finished before approval: %+v, %v", r.res.Account, r.err)
		case <-ctx.Done():
			t.Fatal("MSAL never polled")
		case <-time.After(5 * time.Millisecond):
		}
	}
	approved := time.Now()
	if err := s.Approve(code); err != nil {
		t.Fatal(err)
	}
	if err := s.Approve(code); err != nil {
		t.Errorf("approving twice: %v", err)
	}
	if p := s.Pending(); len(p) != 0 {
		t.Errorf("Pending() after approval = %v", p)
	}
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Logf("login finished %v after approval (%d authorization_pending answers)", time.Since(approved), s.Requests().Pending)
	if r.res.Account.PreferredUsername != "carol@contoso.example" {
		t.Errorf("logged in as %q", r.res.Account.PreferredUsername)
	}
	if err := s.Approve(code); !errors.Is(err, ErrUnknownUserCode) {
		t.Errorf("Approve after redemption: %v, want ErrUnknownUserCode", err)
	}
	if err := s.Approve("NOPE-NOPE"); !errors.Is(err, ErrUnknownUserCode) {
		t.Errorf("Approve of an unknown code: %v, want ErrUnknownUserCode", err)
	}
}

func TestManualDeny(t *testing.T) {
	s := start(t, WithManualApproval())
	app := newApp(t, s, nil)
	ctx := testCtx(t)
	dc, err := app.AcquireTokenByDeviceCode(ctx, scopeRead)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Deny(dc.Result.UserCode); err != nil {
		t.Fatal(err)
	}
	if err := s.Approve(dc.Result.UserCode); err == nil {
		t.Error("approving a denied code succeeded")
	}
	_, err = dc.AuthenticationResult(ctx)
	if err == nil || !strings.Contains(err.Error(), "authorization_declined") {
		t.Errorf("AuthenticationResult after Deny: %v, want authorization_declined", err)
	}
}

func TestPasswordGrant(t *testing.T) {
	s := start(t)
	app := newApp(t, s, nil)
	ctx := testCtx(t)
	began := time.Now()
	//lint:ignore SA1019 the password grant is the fast way to sign in a chosen user in tests
	res, err := app.AcquireTokenByUsernamePassword(ctx, scopeRead, "dave@contoso.example", "any password")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("password login (discovery + user realm + token): %v", time.Since(began))
	if res.Account.PreferredUsername != "dave@contoso.example" {
		t.Errorf("logged in as %q", res.Account.PreferredUsername)
	}
	wantCounts(t, "password login", s.Requests(), Counts{Discovery: 1, UserRealm: 1, Token: 1, PasswordGrant: 1, TokensIssued: 1})

	// The same user through a device code login is the same account.
	s.SetNextUser("dave@contoso.example")
	if got := login(t, ctx, app, scopeWrite).Account.HomeAccountID; got != res.Account.HomeAccountID {
		t.Errorf("device code login of the same user: %q, want %q", got, res.Account.HomeAccountID)
	}
}

// TestManyLogins signs in 1000 accounts (100 with -short) on one MSAL client
// from concurrent goroutines, as the cache tests do.
func TestManyLogins(t *testing.T) {
	n := 1000
	if testing.Short() {
		n = 100
	}
	const workers = 32
	s := start(t)
	app := newApp(t, s, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		homes    = map[string]bool{}
		firstErr error
		slowest  time.Duration
	)
	jobs := make(chan int)
	began := time.Now()
	for range workers {
		wg.Go(func() {
			for range jobs {
				t0 := time.Now()
				dc, err := app.AcquireTokenByDeviceCode(ctx, scopeRead)
				var res public.AuthResult
				if err == nil {
					res, err = dc.AuthenticationResult(ctx)
				}
				d := time.Since(t0)
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				homes[res.Account.HomeAccountID] = true
				slowest = max(slowest, d)
				mu.Unlock()
			}
		})
	}
	for i := range n {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	elapsed := time.Since(began)
	if firstErr != nil {
		t.Fatal(firstErr)
	}
	if len(homes) != n {
		t.Errorf("%d distinct accounts, want %d", len(homes), n)
	}
	accs, err := app.Accounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(accs) != n {
		t.Errorf("Accounts() = %d, want %d", len(accs), n)
	}
	c := s.Requests()
	t.Logf("%d device code logins with %d goroutines: %v (%.1f logins/s, slowest %v); %+v",
		n, workers, elapsed, float64(n)/elapsed.Seconds(), slowest, c)
	if c.TokensIssued != n || c.DeviceCode != n || c.Pending != 0 {
		t.Errorf("counts %+v, want %d logins with one poll each", c, n)
	}
}

func TestCloseLeavesNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	s, err := Start()
	if err != nil {
		t.Fatal(err)
	}
	app := newApp(t, s, nil)
	ctx := testCtx(t)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			dc, err := app.AcquireTokenByDeviceCode(ctx, scopeRead)
			if err == nil {
				_, err = dc.AuthenticationResult(ctx)
			}
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	s.Close()
	s.Close() // idempotent

	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines before Start, %d after Close:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := app.AcquireTokenByDeviceCode(ctx, scopeWrite); err == nil {
		t.Error("a request after Close succeeded")
	}
}

func TestStartRejectsBadOptions(t *testing.T) {
	for _, opt := range []Option{
		WithTenant(""), WithTenant("Contoso"), WithTenant("tokens.example"), WithTenant("a/b"),
		WithTenant("adfs"), WithTenant("common"), WithTokenLifetime(0),
	} {
		if s, err := Start(opt); err == nil {
			s.Close()
			t.Errorf("Start accepted an invalid option %#v", opt)
		}
	}
}

func TestCustomTenant(t *testing.T) {
	s := start(t, WithTenant("contoso.example"))
	if !strings.HasSuffix(s.Authority(), "/contoso.example") || !guidPattern.MatchString(s.TenantID()) {
		t.Fatalf("authority %q, tenant ID %q", s.Authority(), s.TenantID())
	}
	res := login(t, testCtx(t), newApp(t, s, nil), scopeRead)
	if want := fmt.Sprintf("%s.%s", res.Account.LocalAccountID, s.TenantID()); res.Account.HomeAccountID != want {
		t.Errorf("HomeAccountID %q, want %q", res.Account.HomeAccountID, want)
	}
}

// BenchmarkLogin measures one login of a new user on a warm MSAL client.
func BenchmarkLogin(b *testing.B) {
	s := start(b)
	app := newApp(b, s, nil)
	ctx := testCtx(b)
	b.Run("DeviceCode", func(b *testing.B) {
		for b.Loop() {
			login(b, ctx, app, scopeRead)
		}
	})
	b.Run("Password", func(b *testing.B) {
		i := 0
		for b.Loop() {
			i++
			//lint:ignore SA1019 the password grant is the fast way to sign in a chosen user in tests
			if _, err := app.AcquireTokenByUsernamePassword(ctx, scopeRead, fmt.Sprintf("bench%d@contoso.example", i), "pw"); err != nil {
				b.Fatal(err)
			}
		}
	})
}
