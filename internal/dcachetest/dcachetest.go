// Package dcachetest holds the behaviour tests of the distributed cache
// with real MSAL Go confidential clients against the local identity provider
// (internal/fakeidp). Each test takes a store factory, so that the same tests
// run over the memory store (package distributed) and over Redis (package
// redisstore).
package dcachetest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/cache"
	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"

	"github.com/msalcache/msalcache/distributed"
	"github.com/msalcache/msalcache/internal/fakeidp"
	"github.com/msalcache/msalcache/internal/msaljson"
)

// NewStore returns a fresh, empty store for one test and arranges (with
// t.Cleanup) for it to be closed. Every store it returns for one test must
// share the same data, like two connections to one Redis: tests call it once
// per "process".
type NewStore func(t testing.TB) distributed.Store

// Test identities registered with the identity provider.
const (
	WebClientID = "0a0a0a0a-1111-4111-8111-0000000000a1"
	WebSecret   = "web-app-secret"
	APIClientID = "0b0b0b0b-2222-4222-8222-0000000000b2"
	APISecret   = "web-api-secret"
	DaemonID    = "0d0d0d0d-3333-4333-8333-0000000000d3"
	RedirectURI = "https://app.example/auth/callback"
)

// Scopes used by the tests.
var (
	UserScope   = []string{fakeidp.MeScope}
	APIScope    = []string{"api://" + APIClientID + "/access"}
	DaemonScope = []string{"api://downstream/.default"}
)

// IDP starts the identity provider with the test clients registered.
func IDP(t testing.TB) *fakeidp.Server {
	t.Helper()
	s, err := fakeidp.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	for _, c := range []fakeidp.ConfidentialClient{
		{ID: WebClientID, Secret: WebSecret, RedirectURIs: []string{RedirectURI}},
		{ID: APIClientID, Secret: APISecret},
		{ID: DaemonID, Secret: "daemon-secret"},
	} {
		if err := s.RegisterClient(c); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// Ctx returns a context that ends with the test, bounded generously.
func Ctx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// NewCache returns a Cache on s that is closed with the test.
func NewCache(t testing.TB, s distributed.Store, opts ...distributed.Option) *distributed.Cache {
	t.Helper()
	c, err := distributed.New(s, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Client returns a real MSAL confidential client of clientID on idp (the
// default tenant unless authority is given) using c (nil: no cache plugin).
func Client(t testing.TB, idp *fakeidp.Server, clientID, secret, authority string, c cache.ExportReplace) confidential.Client {
	t.Helper()
	cred, err := confidential.NewCredFromSecret(secret)
	if err != nil {
		t.Fatal(err)
	}
	opts := idp.ConfidentialOptions()
	if c != nil {
		opts = append(opts, confidential.WithCache(c))
	}
	if authority == "" {
		authority = idp.Authority()
	}
	app, err := confidential.New(authority, clientID, cred, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return app
}

// WebApp is Client for the web app.
func WebApp(t testing.TB, idp *fakeidp.Server, c cache.ExportReplace) confidential.Client {
	t.Helper()
	return Client(t, idp, WebClientID, WebSecret, "", c)
}

// User is the name of test user i.
func User(i int) string { return fmt.Sprintf("user%03d@%s", i, fakeidp.UserDomain) }

// SignIn signs username in on app with the authorization code flow (the
// user is added to the identity provider first) and returns the account.
func SignIn(t testing.TB, ctx context.Context, idp *fakeidp.Server, app confidential.Client, username string, scopes []string) confidential.Account {
	t.Helper()
	if _, err := idp.AddUser(idp.Tenant(), username); err != nil {
		t.Fatal(err)
	}
	res, err := idp.AuthCodeLogin(ctx, app, WebClientID, RedirectURI, username, scopes)
	if err != nil {
		t.Fatalf("sign-in of %s: %v", username, err)
	}
	return res.Account
}

// SignInAll signs in n users (User(0) ...) with a few goroutines.
func SignInAll(t testing.TB, ctx context.Context, idp *fakeidp.Server, app confidential.Client, n int) []confidential.Account {
	return SignInOn(t, ctx, idp, func(int) confidential.Client { return app }, n)
}

// SignInOn signs in n users (User(0) ...), user i on app(i), with a few
// goroutines.
func SignInOn(t testing.TB, ctx context.Context, idp *fakeidp.Server, app func(i int) confidential.Client, n int) []confidential.Account {
	t.Helper()
	accounts := make([]confidential.Account, n)
	var wg sync.WaitGroup
	var next atomic.Int64
	for range 4 {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				if _, err := idp.AddUser(idp.Tenant(), User(i)); err != nil {
					t.Error(err)
					return
				}
				res, err := idp.AuthCodeLogin(ctx, app(i), WebClientID, RedirectURI, User(i), UserScope)
				if err != nil {
					t.Errorf("sign-in of %s: %v", User(i), err)
					return
				}
				accounts[i] = res.Account
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	return accounts
}

// Silent is AcquireTokenSilent for the user scope that also checks that
// the token is the account's.
func Silent(ctx context.Context, app confidential.Client, a confidential.Account) error {
	res, err := app.AcquireTokenSilent(ctx, UserScope, confidential.WithSilentAccount(a))
	if err != nil {
		return err
	}
	if res.Account.HomeAccountID != a.HomeAccountID {
		return fmt.Errorf("silent call for %s returned %s's token", a.HomeAccountID, res.Account.HomeAccountID)
	}
	return nil
}

// Hammer makes goroutines × calls silent calls on app for random accounts
// and returns the errors.
func Hammer(ctx context.Context, app confidential.Client, accounts []confidential.Account, goroutines, calls int) []error {
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			for range calls {
				a := accounts[rand.IntN(len(accounts))]
				if err := Silent(ctx, app, a); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	return errs
}

// Partition returns what a fresh client would be handed for partition key:
// the entries stored for it.
func Partition(t testing.TB, ctx context.Context, c *distributed.Cache, key string) *msaljson.Snapshot {
	t.Helper()
	var m capture
	if err := c.Replace(ctx, &m, cache.ReplaceHints{PartitionKey: key}); err != nil {
		t.Fatal(err)
	}
	s, err := msaljson.Parse(m.data, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// capture is an MSAL memory that only records what it is given.
type capture struct {
	mu   sync.Mutex
	data []byte
}

func (m *capture) Unmarshal(b []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.data = append([]byte(nil), b...)
	return nil
}

func (m *capture) Marshal() ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]byte(nil), m.data...), nil
}

// Recorder wraps a store and records the keys and TTLs it is given, and the
// values written.
type Recorder struct {
	inner  distributed.Store
	mu     sync.Mutex
	Keys   map[string]bool
	TTLs   map[string]time.Duration
	Values [][]byte
}

// NewRecorder wraps s.
func NewRecorder(s distributed.Store) *Recorder {
	return &Recorder{inner: s, Keys: map[string]bool{}, TTLs: map[string]time.Duration{}}
}

func (r *Recorder) Load(ctx context.Context, key string) ([]byte, distributed.Version, error) {
	r.mu.Lock()
	r.Keys[key] = true
	r.mu.Unlock()
	return r.inner.Load(ctx, key)
}

func (r *Recorder) Store(ctx context.Context, key string, value []byte, prev, next distributed.Version, ttl time.Duration) error {
	r.mu.Lock()
	r.Keys[key] = true
	r.TTLs[key] = ttl
	r.Values = append(r.Values, append([]byte(nil), value...))
	r.mu.Unlock()
	return r.inner.Store(ctx, key, value, prev, next, ttl)
}

func (r *Recorder) Touch(ctx context.Context, key string, ttl time.Duration) error {
	r.mu.Lock()
	r.Keys[key] = true
	r.mu.Unlock()
	return r.inner.Touch(ctx, key, ttl)
}

func (r *Recorder) Close() error { return r.inner.Close() }

// Notify passes the registration on, if the store has notices.
func (r *Recorder) Notify(f func(string)) {
	if n, ok := r.inner.(distributed.Notifier); ok {
		n.Notify(f)
	}
}

// Failing wraps a store and fails every call while it is down, as a client
// of a killed Redis does; with hang, calls wait for their ctx instead (a
// half-open connection). Notices pass while it is up, and "" when it comes
// back (a Redis client's reconnection).
type Failing struct {
	inner      distributed.Store
	mu         sync.Mutex
	down, hang bool
	notify     func(string)
	calls      atomic.Int64
}

// NewFailing wraps s, up.
func NewFailing(s distributed.Store) *Failing { return &Failing{inner: s} }

// Set takes the store down or brings it back.
func (f *Failing) Set(down, hang bool) {
	f.mu.Lock()
	f.down, f.hang = down, hang
	notify := f.notify
	f.mu.Unlock()
	if !down && notify != nil {
		notify("")
	}
}

// Lose takes the store down and reports the lost connection (the notice
// ""), as redisstore does when Redis goes away: every client's copy of
// every partition is then to be read again.
func (f *Failing) Lose() {
	f.mu.Lock()
	f.down, f.hang = true, false
	notify := f.notify
	f.mu.Unlock()
	if notify != nil {
		notify("")
	}
}

// Calls is how many calls the store received.
func (f *Failing) Calls() int64 { return f.calls.Load() }

var errRefused = errors.New("dial tcp 127.0.0.1:6379: connect: connection refused")

// errHung wraps the error of a call that waited on a hung Failing store.
var errHung = errors.New("the store hangs (test)")

// injected reports whether err is a failure the Failing store made up, not
// one of the store under it.
func injected(err error) bool { return errors.Is(err, errRefused) || errors.Is(err, errHung) }

func (f *Failing) fail(ctx context.Context) error {
	f.calls.Add(1)
	f.mu.Lock()
	down, hang := f.down, f.hang
	f.mu.Unlock()
	if !down {
		return nil
	}
	if hang {
		<-ctx.Done()
		return fmt.Errorf("%w (%w)", errHung, ctx.Err())
	}
	return errRefused
}

func (f *Failing) Load(ctx context.Context, key string) ([]byte, distributed.Version, error) {
	if err := f.fail(ctx); err != nil {
		return nil, 0, err
	}
	return f.inner.Load(ctx, key)
}

func (f *Failing) Store(ctx context.Context, key string, value []byte, prev, next distributed.Version, ttl time.Duration) error {
	if err := f.fail(ctx); err != nil {
		return err
	}
	return f.inner.Store(ctx, key, value, prev, next, ttl)
}

func (f *Failing) Touch(ctx context.Context, key string, ttl time.Duration) error {
	if err := f.fail(ctx); err != nil {
		return err
	}
	return f.inner.Touch(ctx, key, ttl)
}

func (f *Failing) Close() error { return f.inner.Close() }

// Notify passes notices on while the store is up.
func (f *Failing) Notify(fn func(string)) {
	f.mu.Lock()
	f.notify = fn
	f.mu.Unlock()
	n, ok := f.inner.(distributed.Notifier)
	if !ok {
		return
	}
	n.Notify(func(k string) {
		f.mu.Lock()
		down := f.down
		f.mu.Unlock()
		if !down {
			fn(k)
		}
	})
}

// homeOf lists the home account IDs (or app partition owners) of the
// entries of s, other than AppMetadata.
func homesOf(s *msaljson.Snapshot) map[string]bool {
	homes := map[string]bool{}
	for name, section := range s.Sections {
		if name == "AppMetadata" {
			continue
		}
		for _, entry := range section {
			i := strings.Index(entry, `"home_account_id":"`)
			if i < 0 {
				homes[""] = true
				continue
			}
			rest := entry[i+len(`"home_account_id":"`):]
			homes[rest[:strings.IndexByte(rest, '"')]] = true
		}
	}
	return homes
}
