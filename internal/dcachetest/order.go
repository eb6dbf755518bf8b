package dcachetest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"

	"github.com/msalcache/msalcache/distributed"
	"github.com/msalcache/msalcache/internal/fakeidp"
	"github.com/msalcache/msalcache/internal/msaljson"
)

// This file tests how sign-outs are ordered with sign-ins, token refreshes
// and the writes kept during an outage: a sign-out is undone only by a
// sign-in after it.

// Request returns the context of one request, as net/http's r.Context():
// its own Done, ended (cancel) when the request ends. The Cache tells
// requests apart by it.
func Request(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithCancel(ctx)
}

// Coherence bounds how long a change made on one replica may take to be
// seen by another (the store's notice).
const Coherence = 5 * time.Second

// signInReq signs username in on app in a request of its own.
func signInReq(t testing.TB, ctx context.Context, idp *fakeidp.Server, app confidential.Client, username string, scopes []string) confidential.AuthResult {
	t.Helper()
	if _, err := idp.AddUser(idp.Tenant(), username); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := Request(ctx)
	defer cancel()
	res, err := idp.AuthCodeLogin(rctx, app, WebClientID, RedirectURI, username, scopes)
	if err != nil {
		t.Fatalf("sign-in of %s: %v", username, err)
	}
	return res
}

// silentReq is Silent in a request of its own.
func silentReq(ctx context.Context, app confidential.Client, a confidential.Account) error {
	rctx, cancel := Request(ctx)
	defer cancel()
	return Silent(rctx, app, a)
}

// removeReq is RemovePartition in a request of its own.
func removeReq(t testing.TB, ctx context.Context, c *distributed.Cache, key string) {
	t.Helper()
	rctx, cancel := Request(ctx)
	defer cancel()
	if err := c.RemovePartition(rctx, key); err != nil {
		t.Fatalf("RemovePartition: %v", err)
	}
}

// servedFromCache waits (within Coherence) until a silent call for a on app
// is served with no token request.
func servedFromCache(t testing.TB, ctx context.Context, idp *fakeidp.Server, app confidential.Client, a confidential.Account, what string) {
	t.Helper()
	deadline := time.Now().Add(Coherence)
	for {
		before := idp.Requests()
		err := silentReq(ctx, app, a)
		if err == nil && idp.Requests().Sub(before).Token == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not served from the cache within %v: %v", what, Coherence, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// signedOut checks that no replica serves a and that the store holds no
// token of hers.
func signedOut(t testing.TB, ctx context.Context, newStore NewStore, a confidential.Account, what string, apps ...confidential.Client) {
	t.Helper()
	if why := back(t, ctx, newStore, a, apps...); why != "" {
		t.Errorf("%s: %s", what, why)
	}
}

// back says how a user who signed out is back ("": she is not): the store
// holds tokens of hers, or a replica serves her.
func back(t testing.TB, ctx context.Context, newStore NewStore, a confidential.Account, apps ...confidential.Client) string {
	t.Helper()
	if s := Partition(t, ctx, NewCache(t, newStore(t)), a.HomeAccountID); tokens(s) > 0 {
		return fmt.Sprintf("the store holds %d tokens of the user who signed out", tokens(s))
	}
	for i, app := range apps {
		if err := silentReq(ctx, app, a); err == nil {
			return fmt.Sprintf("replica %d still serves the user who signed out", i)
		}
	}
	return ""
}

func tokens(s *msaljson.Snapshot) int {
	return len(s.Sections["AccessToken"]) + len(s.Sections["RefreshToken"]) + len(s.Sections["IdToken"])
}

// SignInAgain: a user who signs out and signs in again at once, on the
// replica that served her or on another, is signed in: the new tokens are
// stored and every replica serves them from the cache within Coherence
// (each step is a request of its own, as in a web app).
func SignInAgain(t *testing.T, newStore NewStore) {
	idp := IDP(t)
	ctx := Ctx(t)
	ca, cb := NewCache(t, newStore(t)), NewCache(t, newStore(t))
	apps := map[string]confidential.Client{"A": WebApp(t, idp, ca), "B": WebApp(t, idp, cb)}
	caches := map[string]*distributed.Cache{"A": ca, "B": cb}
	for i, step := range []struct{ out, in string }{{"A", "A"}, {"A", "B"}, {"B", "A"}, {"B", "B"}} {
		user := User(10 + i)
		a := signInReq(t, ctx, idp, apps["A"], user, UserScope).Account
		for _, app := range apps {
			servedFromCache(t, ctx, idp, app, a, "before the sign-out")
		}
		removeReq(t, ctx, caches[step.out], a.HomeAccountID)
		again := signInReq(t, ctx, idp, apps[step.in], user, UserScope).Account
		what := fmt.Sprintf("signed out on %s, signed in again on %s at once", step.out, step.in)
		if s := Partition(t, ctx, NewCache(t, newStore(t)), again.HomeAccountID); tokens(s) == 0 {
			t.Errorf("%s: the sign-in was not stored", what)
		}
		for name, app := range apps {
			servedFromCache(t, ctx, idp, app, again, what+", replica "+name)
		}
	}
}

// RefreshAcrossSignOut: a token refresh that reads a user's partition, then
// waits for the identity provider while the user signs out (on the same
// replica or another), does not bring the partition back; nor does it when
// the client's working set churns meanwhile (churn, if not nil, reads other
// users' partitions on the refreshing client: opts then make its working
// set small).
func RefreshAcrossSignOut(t *testing.T, newStore NewStore, churn bool, opts ...distributed.Option) {
	idp := IDP(t)
	ctx := Ctx(t)
	ca, cb := NewCache(t, newStore(t), opts...), NewCache(t, newStore(t))
	appA, appB := WebApp(t, idp, ca), WebApp(t, idp, cb)
	var others []confidential.Account
	if churn {
		for i := range 6 {
			others = append(others, signInReq(t, ctx, idp, appB, User(60+i), UserScope).Account)
		}
	}
	for i, remover := range []*distributed.Cache{ca, cb} {
		what := fmt.Sprintf("refresh on A, sign-out on %c", 'A'+i)
		a := signInReq(t, ctx, idp, appA, User(50+i), UserScope).Account
		servedFromCache(t, ctx, idp, appB, a, what)
		held, release := idp.HoldRefreshes()
		refreshed := make(chan error, 1)
		go func() {
			rctx, cancel := Request(ctx)
			defer cancel()
			_, err := appA.AcquireTokenSilent(rctx, []string{fmt.Sprintf("api://in-flight-%d/read", i)}, confidential.WithSilentAccount(a))
			refreshed <- err
		}()
		select {
		case <-held:
		case err := <-refreshed:
			release()
			t.Fatalf("%s: the refresh was not held: %v", what, err)
		}
		removeReq(t, ctx, remover, a.HomeAccountID)
		if churn {
			// Other users' requests on A: the refreshing user's partition
			// leaves the working set.
			until := time.Now().Add(300 * time.Millisecond)
			for time.Now().Before(until) {
				for _, o := range others {
					if err := silentReq(ctx, appA, o); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
		release()
		if err := <-refreshed; err != nil {
			t.Fatalf("%s: the refresh: %v", what, err)
		}
		signedOut(t, ctx, newStore, a, what, appA, appB)
	}
}

// OutageOrder: a user who signs in on a replica cut off from the store
// (A) and then signs out on another (B) stays signed out after A's
// write-back, every time (n runs); the same with the whole store out, where
// RemovePartition keeps the sign-out, returns nil, and the user is gone
// from B at once. The replicas are cut off by Failing stores.
func OutageOrder(t *testing.T, newStore NewStore, n int) {
	for _, whole := range []bool{false, true} {
		name := "A cut off"
		if whole {
			name = "the whole store out"
		}
		t.Run(name, func(t *testing.T) {
			fa, fb := NewFailing(newStore(t)), NewFailing(newStore(t))
			OutageOrderOn(t, newStore, fa, fb, func(down bool) {
				fa.Set(down, false)
				fb.Set(down && whole, false)
			}, whole, n)
		})
	}
}

// OutageOrderOn is OutageOrder for replicas A and B on stores a and b, which
// cut(true) cuts off from the store (A alone, or both if whole) and
// cut(false) brings back.
func OutageOrderOn(t *testing.T, newStore NewStore, a, b distributed.Store, cut func(down bool), whole bool, n int) {
	idp := IDP(t)
	ctx := Ctx(t)
	const timeout = 500 * time.Millisecond
	ca := NewCache(t, a, distributed.WithTimeout(timeout))
	cb := NewCache(t, b, distributed.WithTimeout(timeout))
	appA, appB := WebApp(t, idp, ca), WebApp(t, idp, cb)
	var backs []string
	for i := range n {
		cut(true)
		acc := signInReq(t, ctx, idp, appA, User(100+i), UserScope).Account
		if err := silentReq(ctx, appA, acc); err != nil {
			t.Fatalf("the user who signed in during the outage: %v", err)
		}
		rctx, cancel := Request(ctx)
		if err := cb.RemovePartition(rctx, acc.HomeAccountID); err != nil {
			t.Errorf("RemovePartition: %v", err)
		}
		cancel()
		if err := silentReq(ctx, appB, acc); whole && err == nil {
			t.Errorf("the replica that signed the user out still serves her")
		}
		cut(false)
		waitPending(t, ca, 0)
		waitPending(t, cb, 0)
		if why := back(t, ctx, newStore, acc, appA, appB); why != "" {
			backs = append(backs, why)
		}
	}
	if len(backs) > 0 {
		t.Errorf("signed in on A, then signed out on B: back after the write-back in %d of %d runs; first: %s", len(backs), n, backs[0])
	}
}

// SignOutInDuringOutage: a sign-out and then a sign-in on a replica cut off
// from the store leave, after the write-back, only the new sign-in's
// tokens in the store (the sign-out is written before them).
func SignOutInDuringOutage(t *testing.T, newStore NewStore) {
	idp := IDP(t)
	ctx := Ctx(t)
	f := NewFailing(newStore(t))
	c := NewCache(t, f, distributed.WithTimeout(500*time.Millisecond))
	app, other := WebApp(t, idp, c), WebApp(t, idp, NewCache(t, newStore(t)))
	a := signInReq(t, ctx, idp, app, User(300), UserScope).Account
	rctx, cancel := Request(ctx)
	if _, err := app.AcquireTokenSilent(rctx, []string{"api://before-sign-out/read"}, confidential.WithSilentAccount(a)); err != nil {
		t.Fatal(err)
	}
	cancel()
	f.Set(true, false)
	removeReq(t, ctx, c, a.HomeAccountID)
	res := signInReq(t, ctx, idp, app, User(300), UserScope)
	f.Set(false, false)
	waitPending(t, c, 0)
	s := Partition(t, ctx, NewCache(t, newStore(t)), a.HomeAccountID)
	var old, fresh int
	for _, entry := range s.Sections["AccessToken"] {
		if strings.Contains(entry, "before-sign-out") {
			old++
		}
		if strings.Contains(entry, res.AccessToken) {
			fresh++
		}
	}
	if old != 0 || fresh != 1 {
		t.Errorf("signed out then in during an outage: the store holds %d access tokens from before the sign-out (want 0) and %d from the sign-in (want 1)", old, fresh)
	}
	servedFromCache(t, ctx, idp, other, res.Account, "signed out then in during an outage, another replica")
}

// RefreshWhileCutOff: a replica cut off from the store (A) keeps serving a
// user who signs out on another replica (B) meanwhile; a token refresh that
// A makes after the sign-out (by any clock) is kept, and at the
// write-back it does not bring her back: only a sign-in starts a new
// generation after a sign-out, never a refresh of tokens read before it.
func RefreshWhileCutOff(t *testing.T, newStore NewStore) {
	idp := IDP(t)
	ctx := Ctx(t)
	fa := NewFailing(newStore(t))
	ca := NewCache(t, fa, distributed.WithTimeout(500*time.Millisecond))
	cb := NewCache(t, newStore(t))
	appA, appB := WebApp(t, idp, ca), WebApp(t, idp, cb)
	a := signInReq(t, ctx, idp, appA, User(400), UserScope).Account
	servedFromCache(t, ctx, idp, appB, a, "before the outage")
	fa.Set(true, false)
	removeReq(t, ctx, cb, a.HomeAccountID)
	time.Sleep(5 * time.Millisecond) // the refresh begins after the sign-out
	before := idp.Requests()
	rctx, cancel := Request(ctx)
	_, err := appA.AcquireTokenSilent(rctx, []string{"api://after-sign-out/read"}, confidential.WithSilentAccount(a))
	cancel()
	if err != nil {
		t.Fatalf("the refresh on the replica cut off: %v", err)
	}
	if idp.Requests().Sub(before).Token != 1 {
		t.Fatalf("the replica cut off made %d token requests, want the one refresh", idp.Requests().Sub(before).Token)
	}
	fa.Set(false, false)
	waitPending(t, ca, 0)
	signedOut(t, ctx, newStore, a, "refreshed after the sign-out on a replica cut off from the store", appA, appB)
}

// AppSignOut: RemovePartition of a daemon's app-token partition costs one
// new token, not a token request per call.
func AppSignOut(t *testing.T, newStore NewStore) {
	const calls = 20
	idp := IDP(t)
	ctx := Ctx(t)
	c := NewCache(t, newStore(t))
	daemon := Client(t, idp, DaemonID, "daemon-secret", "", c)
	if _, err := daemon.AcquireTokenByCredential(ctx, DaemonScope); err != nil {
		t.Fatal(err)
	}
	removeReq(t, ctx, c, DaemonID+"_"+idp.Tenant()+"_AppTokenCache")
	before := idp.Requests()
	for range calls {
		rctx, cancel := Request(ctx)
		_, err := daemon.AcquireTokenByCredential(rctx, DaemonScope)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
	if d := idp.Requests().Sub(before); d.ClientCredentialsGrant != 1 {
		t.Errorf("%d calls after the app partition was removed made %d token requests, want 1", calls, d.ClientCredentialsGrant)
	}
}
