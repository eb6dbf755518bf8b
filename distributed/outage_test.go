package distributed_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"

	"github.com/msalcache/msalcache/distributed"
	"github.com/msalcache/msalcache/internal/dcachetest"
)

// TestWarmUsersKeepTheirPlaceDuringAnOutage: with the store out and the
// working set full, a user served from MSAL's memory counts as used, so the
// next sign-in (kept for the write-back) evicts a user nobody asked for,
// not one served a moment ago. Real MSAL Go clients; the outage is a lost
// connection, as when Redis goes away (every copy is to be read again, so
// each call takes the outage's path).
func TestWarmUsersKeepTheirPlaceDuringAnOutage(t *testing.T) {
	idp := dcachetest.IDP(t)
	ctx := dcachetest.Ctx(t)
	f := dcachetest.NewFailing(distributed.NewMemoryStore())
	const grace = 200 * time.Millisecond
	c := dcachetest.NewCache(t, f, distributed.WithTimeout(500*time.Millisecond), distributed.WithViewForTests(3, grace))
	app := dcachetest.WebApp(t, idp, c)
	accounts := dcachetest.SignInAll(t, ctx, idp, app, 3) // the working set is full
	for _, a := range accounts {
		if err := dcachetest.Silent(ctx, app, a); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(2 * grace) // no partition is within its grace period any more

	f.Lose()
	warm := accounts[:2] // served during the outage; accounts[2] is not asked for
	for _, a := range warm {
		if err := dcachetest.Silent(ctx, app, a); err != nil {
			t.Fatalf("a warm user during the outage: %v", err)
		}
	}
	newcomer := dcachetest.SignIn(t, ctx, idp, app, dcachetest.User(3), dcachetest.UserScope)
	before := idp.Requests()
	for i, a := range append([]confidential.Account{newcomer}, warm...) {
		if err := dcachetest.Silent(ctx, app, a); err != nil {
			t.Errorf("user %d, served just before a sign-in during the outage: %v", i, err)
		}
	}
	if n := idp.Requests().Sub(before).Token; n != 0 {
		t.Errorf("%d token requests for users MSAL held", n)
	}
	if c.Stats().Pending != 1 {
		t.Errorf("stats %+v: want the sign-in kept", c.Stats())
	}
	f.Set(false, false)
}

// inner names distributed.Store for embedding: a field named Store would
// hide the method.
type inner = distributed.Store

// stuckWrites is a store whose writes, while it is stuck, wait for their
// ctx to end or for the store to be released (then they fail).
type stuckWrites struct {
	inner
	mu   sync.Mutex
	gate chan struct{} // nil: not stuck
}

func (s *stuckWrites) stick() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gate = make(chan struct{})
}

func (s *stuckWrites) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	close(s.gate)
	s.gate = nil
}

func (s *stuckWrites) Store(ctx context.Context, key string, value []byte, prev, next distributed.Version, ttl time.Duration) error {
	s.mu.Lock()
	gate := s.gate
	s.mu.Unlock()
	if gate != nil {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-gate:
			return errors.New("stuck write released (test)")
		}
	}
	return s.inner.Store(ctx, key, value, prev, next, ttl)
}

func (s *stuckWrites) Notify(f func(string)) { s.inner.(distributed.Notifier).Notify(f) }

// TestAKeptWriteIsNotHiddenByTheLayer: a token whose write ran out of the
// caller's time is kept for the write-back; the next call finds it in
// MSAL's memory, not the older copy of the partition the in-process layer
// holds (which would send MSAL to the identity provider again, with a
// refresh token that may be gone), and the write-back stores it.
func TestAKeptWriteIsNotHiddenByTheLayer(t *testing.T) {
	idp := dcachetest.IDP(t)
	ctx := dcachetest.Ctx(t)
	s := &stuckWrites{inner: distributed.NewMemoryStore()}
	t.Cleanup(func() { s.Close() })
	c := dcachetest.NewCache(t, s, distributed.WithTimeout(10*time.Second))
	app := dcachetest.WebApp(t, idp, c)
	alice := dcachetest.SignIn(t, ctx, idp, app, dcachetest.User(0), dcachetest.UserScope)
	if err := dcachetest.Silent(ctx, app, alice); err != nil {
		t.Fatal(err)
	}
	// Another client of the process (a per-request client, or the web
	// API's) reads her too: the in-process layer holds her partition.
	if err := dcachetest.Silent(ctx, dcachetest.WebApp(t, idp, c), alice); err != nil {
		t.Fatal(err)
	}
	if c.Stats().Bytes == 0 {
		t.Fatal("the in-process layer holds nothing")
	}
	scope := []string{"api://kept/read"}
	s.stick()
	short, cancel := context.WithTimeout(ctx, time.Second)
	_, err := app.AcquireTokenSilent(short, scope, confidential.WithSilentAccount(alice))
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	if st := c.Stats(); st.Pending != 1 {
		t.Fatalf("stats %+v: want the write that ran out of time kept", st)
	}
	before := idp.Requests()
	short, cancel = context.WithTimeout(ctx, time.Second)
	_, err = app.AcquireTokenSilent(short, scope, confidential.WithSilentAccount(alice))
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	if n := idp.Requests().Sub(before).Token; n != 0 {
		t.Errorf("%d token requests for a token kept for the write-back: an older copy hid it", n)
	}
	s.release()
	deadline := time.Now().Add(30 * time.Second)
	for c.Stats().Pending > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("not written back: %+v", c.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
	other := dcachetest.WebApp(t, idp, dcachetest.NewCache(t, s))
	before = idp.Requests()
	if _, err := other.AcquireTokenSilent(ctx, scope, confidential.WithSilentAccount(alice)); err != nil {
		t.Fatal(err)
	}
	if n := idp.Requests().Sub(before).Token; n != 0 {
		t.Errorf("another process asked the identity provider %d times: the kept token was not written back", n)
	}
}
