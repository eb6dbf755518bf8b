package distributed_test

import (
	"errors"
	"testing"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"

	"github.com/msalcache/msalcache/distributed"
	"github.com/msalcache/msalcache/internal/dcachetest"
)

// noNotices hides a store's notices: the Cache then has no in-process layer
// and asks the store at every Replace.
type noNotices struct{ inner }

// TestSignOutReachesEveryClientOfTheProcess: a sign-out reaches every MSAL
// client of the process that holds the user, without the Cache visiting
// each client's view: through the layer's invalidation (each view's copy is
// watched), through the store (no layer), and through the kept removal
// (store out).
func TestSignOutReachesEveryClientOfTheProcess(t *testing.T) {
	for _, tc := range []struct {
		name  string
		store func() (distributed.Store, *dcachetest.Failing)
		opts  []distributed.Option
		down  bool
	}{
		{name: "layer", store: func() (distributed.Store, *dcachetest.Failing) { return distributed.NewMemoryStore(), nil }},
		{name: "no-layer", store: func() (distributed.Store, *dcachetest.Failing) { return distributed.NewMemoryStore(), nil }, opts: []distributed.Option{distributed.WithL1(0)}},
		{name: "no-notices", store: func() (distributed.Store, *dcachetest.Failing) { return noNotices{distributed.NewMemoryStore()}, nil }},
		{name: "store-out", down: true, store: func() (distributed.Store, *dcachetest.Failing) {
			f := dcachetest.NewFailing(distributed.NewMemoryStore())
			return f, f
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			idp := dcachetest.IDP(t)
			ctx := dcachetest.Ctx(t)
			s, f := tc.store()
			t.Cleanup(func() { s.Close() })
			c := dcachetest.NewCache(t, s, tc.opts...)
			apps := []confidential.Client{dcachetest.WebApp(t, idp, c), dcachetest.WebApp(t, idp, c), dcachetest.WebApp(t, idp, c)}
			alice := dcachetest.SignIn(t, ctx, idp, apps[0], dcachetest.User(0), dcachetest.UserScope)
			bob := dcachetest.SignIn(t, ctx, idp, apps[1], dcachetest.User(1), dcachetest.UserScope)
			for range 2 { // the second call finds her at the current version
				for _, app := range apps {
					for _, a := range []confidential.Account{alice, bob} {
						if err := dcachetest.Silent(ctx, app, a); err != nil {
							t.Fatal(err)
						}
					}
				}
			}
			if tc.down {
				f.Set(true, false)
			}
			if err := c.RemovePartition(ctx, alice.HomeAccountID); err != nil && !(tc.down && errors.Is(err, distributed.ErrUnavailable)) {
				t.Fatal(err)
			}
			for i, app := range apps {
				if err := dcachetest.Silent(ctx, app, alice); err == nil {
					t.Errorf("client %d still serves a user signed out on its process", i)
				}
				if err := dcachetest.Silent(ctx, app, bob); err != nil {
					t.Errorf("client %d: another user: %v", i, err)
				}
			}
		})
	}
}

// TestAWriteBackReachesEveryClientOfTheProcess: a token kept during an
// outage by one client is, once written back, what the other clients of
// the process read (they held the partition at its older version), without
// the write-back visiting each client's view.
func TestAWriteBackReachesEveryClientOfTheProcess(t *testing.T) {
	for _, name := range []string{"layer", "no-layer"} {
		t.Run(name, func(t *testing.T) {
			idp := dcachetest.IDP(t)
			ctx := dcachetest.Ctx(t)
			f := dcachetest.NewFailing(distributed.NewMemoryStore())
			t.Cleanup(func() { f.Close() })
			var opts []distributed.Option
			if name == "no-layer" {
				opts = append(opts, distributed.WithL1(0))
			}
			c := dcachetest.NewCache(t, f, opts...)
			apps := []confidential.Client{dcachetest.WebApp(t, idp, c), dcachetest.WebApp(t, idp, c), dcachetest.WebApp(t, idp, c)}
			alice := dcachetest.SignIn(t, ctx, idp, apps[0], dcachetest.User(0), dcachetest.UserScope)
			for range 2 {
				for _, app := range apps {
					if err := dcachetest.Silent(ctx, app, alice); err != nil {
						t.Fatal(err)
					}
				}
			}
			scope := []string{"api://written-back/read"}
			f.Set(true, false)
			if _, err := apps[0].AcquireTokenSilent(ctx, scope, confidential.WithSilentAccount(alice)); err != nil {
				t.Fatal(err)
			}
			if n := c.Stats().Pending; n != 1 {
				t.Fatalf("%d writes kept, want 1", n)
			}
			f.Set(false, false)
			deadline := time.Now().Add(30 * time.Second)
			for st := c.Stats(); st.Pending > 0 || st.StoreDown; st = c.Stats() {
				if time.Now().After(deadline) {
					t.Fatalf("not written back: %+v", st)
				}
				time.Sleep(5 * time.Millisecond)
			}
			before := idp.Requests()
			for i, app := range apps[1:] {
				if _, err := app.AcquireTokenSilent(ctx, scope, confidential.WithSilentAccount(alice)); err != nil {
					t.Errorf("client %d: %v", i+1, err)
				}
			}
			if n := idp.Requests().Sub(before).Token; n != 0 {
				t.Errorf("%d token requests: the other clients did not read the token written back", n)
			}
		})
	}
}
