package dcachetest

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"

	"github.com/msalcache/msalcache/distributed"
	"github.com/msalcache/msalcache/internal/fakeidp"
	"github.com/msalcache/msalcache/internal/recordfmt"
)

// Run runs every behaviour test over stores from newStore.
func Run(t *testing.T, newStore NewStore) {
	for name, f := range map[string]func(*testing.T, NewStore){
		"SharedClient": SharedClient,
		"Daemon":       Daemon,
		"Isolation":    Isolation,
		"LostUpdates":  LostUpdates,
		"HotPath":      HotPath,
		"SignOut":      SignOut,
		"OnBehalfOf":   OnBehalfOf,
		"Outage":       Outage,
		"Return":       Return,
		"Expiry":       Expiry,
		"Encrypted":    Encrypted,
		"Rotation":     Rotation,
		"SignInAgain":  SignInAgain,
		"RefreshAcrossSignOut": func(t *testing.T, s NewStore) {
			RefreshAcrossSignOut(t, s, false)
		},
		"OutageOrder":           func(t *testing.T, s NewStore) { OutageOrder(t, s, 20) },
		"AppSignOut":            AppSignOut,
		"SignOutInDuringOutage": SignOutInDuringOutage,
		"RefreshWhileCutOff":    RefreshWhileCutOff,
	} {
		t.Run(name, func(t *testing.T) { f(t, newStore) })
	}
}

// SharedClient: one confidential client shared by 32 goroutines serving 200
// users gets no failure and never another user's token, and asks the
// identity provider for nothing (every token is cached).
func SharedClient(t *testing.T, newStore NewStore) {
	const users, goroutines, calls = 200, 32, 40
	idp := IDP(t)
	ctx := Ctx(t)
	c := NewCache(t, newStore(t))
	app := WebApp(t, idp, c)
	// The users signed in earlier, on clients of other processes (each
	// write costs a client a pass over its memory: keep them small).
	signers := make([]confidential.Client, users/20)
	for i := range signers {
		signers[i] = WebApp(t, idp, NewCache(t, newStore(t)))
	}
	accounts := SignInOn(t, ctx, idp, func(i int) confidential.Client { return signers[i%len(signers)] }, users)
	before := idp.Requests()
	start := time.Now()
	errs := Hammer(ctx, app, accounts, goroutines, calls)
	t.Logf("%d silent calls in %v", goroutines*calls, time.Since(start))
	if len(errs) > 0 {
		t.Errorf("%d of %d silent calls failed; first: %v", len(errs), goroutines*calls, errs[0])
	}
	if d := idp.Requests().Sub(before); d.Token != 0 {
		t.Errorf("the silent calls made %d token requests, want 0 (every token was cached)", d.Token)
	}
	t.Logf("stats %+v", c.Stats())
}

// Daemon: client credentials for 20 tenants on one shared client: after
// the first token of each tenant, every call is a cache hit.
func Daemon(t *testing.T, newStore NewStore) {
	const tenants, goroutines, calls = 20, 16, 40
	idp := IDP(t)
	ctx := Ctx(t)
	for i := range tenants {
		if _, err := idp.AddTenant(fmt.Sprintf("tenant-%02d", i)); err != nil {
			t.Fatal(err)
		}
	}
	c := NewCache(t, newStore(t))
	app := Client(t, idp, DaemonID, "daemon-secret", idp.Origin()+"/tenant-00", c)
	for i := range tenants {
		if _, err := app.AcquireTokenByCredential(ctx, DaemonScope, confidential.WithTenantID(fmt.Sprintf("tenant-%02d", i))); err != nil {
			t.Fatal(err)
		}
	}
	before := idp.Requests()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures int
	for g := range goroutines {
		wg.Go(func() {
			for n := range calls {
				tenant := fmt.Sprintf("tenant-%02d", (g+n)%tenants)
				if _, err := app.AcquireTokenByCredential(ctx, DaemonScope, confidential.WithTenantID(tenant)); err != nil {
					mu.Lock()
					failures++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if failures > 0 {
		t.Errorf("%d calls failed", failures)
	}
	if d := idp.Requests().Sub(before); d.ClientCredentialsGrant != 0 {
		t.Errorf("%d of %d cached tokens were missed (each a token request)", d.ClientCredentialsGrant, goroutines*calls)
	}
}

// Isolation: each stored partition holds only its own user's entries,
// whatever MSAL's memory holds, and no store key names a user, tenant or
// client.
func Isolation(t *testing.T, newStore NewStore) {
	idp := IDP(t)
	ctx := Ctx(t)
	rec := NewRecorder(newStore(t))
	c := NewCache(t, rec)
	app := WebApp(t, idp, c)
	accounts := SignInAll(t, ctx, idp, app, 10)
	if errs := Hammer(ctx, app, accounts, 4, 20); len(errs) > 0 {
		t.Fatal(errs[0])
	}
	daemon := Client(t, idp, DaemonID, "daemon-secret", "", c)
	if _, err := daemon.AcquireTokenByCredential(ctx, DaemonScope); err != nil {
		t.Fatal(err)
	}
	reader := NewCache(t, newStore(t))
	for _, a := range accounts {
		homes := homesOf(Partition(t, ctx, reader, a.HomeAccountID))
		if len(homes) != 1 || !homes[a.HomeAccountID] {
			t.Errorf("partition %s holds entries of %v", a.HomeAccountID, homes)
		}
	}
	app2 := DaemonID + "_" + idp.Tenant() + "_AppTokenCache"
	if homes := homesOf(Partition(t, ctx, reader, app2)); len(homes) != 1 || !homes[""] {
		t.Errorf("the app partition holds entries of %v", homes)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for key := range rec.Keys {
		if !strings.HasPrefix(key, distributed.DefaultKeyPrefix) {
			t.Errorf("store key %q lacks the prefix", key)
		}
		for _, secret := range []string{idp.TenantID(), idp.Tenant(), WebClientID, DaemonID, "user0", accounts[0].HomeAccountID[:8]} {
			if strings.Contains(strings.ToLower(key), strings.ToLower(secret)) {
				t.Errorf("store key %q names %q", key, secret)
			}
		}
	}
}

// LostUpdates: processes (Caches with their own clients on one store) get
// tokens for one user at once, each for its own scopes, so they write one
// partition concurrently; afterwards a new process finds every token.
func LostUpdates(t *testing.T, newStore NewStore) {
	const processes, goroutines, scopes = 3, 3, 4
	idp := IDP(t)
	ctx := Ctx(t)
	first := WebApp(t, idp, NewCache(t, newStore(t)))
	a := SignIn(t, ctx, idp, first, User(0), UserScope)
	scope := func(p, g, n int) []string { return []string{fmt.Sprintf("api://res-%d-%d-%d/read", p, g, n)} }
	var wg sync.WaitGroup
	for p := range processes {
		app := WebApp(t, idp, NewCache(t, newStore(t)))
		for g := range goroutines {
			wg.Go(func() {
				for n := range scopes {
					if _, err := app.AcquireTokenSilent(ctx, scope(p, g, n), confidential.WithSilentAccount(a)); err != nil {
						t.Errorf("process %d: %v", p, err)
					}
				}
			})
		}
	}
	wg.Wait()
	fresh := WebApp(t, idp, NewCache(t, newStore(t)))
	before := idp.Requests()
	for p := range processes {
		for g := range goroutines {
			for n := range scopes {
				if _, err := fresh.AcquireTokenSilent(ctx, scope(p, g, n), confidential.WithSilentAccount(a)); err != nil {
					t.Errorf("scope %v: %v", scope(p, g, n), err)
				}
			}
		}
	}
	if d := idp.Requests().Sub(before); d.Token != 0 {
		t.Errorf("%d of %d tokens were lost (the new process had to ask for them again)", d.Token, processes*goroutines*scopes)
	}
}

// HotPath: silent hits of a partition MSAL holds cost no store call and no
// Unmarshal; a token another process adds is seen at once (the store's
// notice), then served from memory again.
func HotPath(t *testing.T, newStore NewStore) {
	idp := IDP(t)
	ctx := Ctx(t)
	c := NewCache(t, newStore(t))
	app := WebApp(t, idp, c)
	a := SignIn(t, ctx, idp, app, User(0), UserScope)
	if err := Silent(ctx, app, a); err != nil {
		t.Fatal(err)
	}
	before := c.Stats()
	for range 2000 {
		if err := Silent(ctx, app, a); err != nil {
			t.Fatal(err)
		}
	}
	after := c.Stats()
	if after.StoreReads != before.StoreReads || after.Unmarshals != before.Unmarshals {
		t.Errorf("2000 silent hits: %d store reads, %d unmarshals; want 0 and 0",
			after.StoreReads-before.StoreReads, after.Unmarshals-before.Unmarshals)
	}
	other := WebApp(t, idp, NewCache(t, newStore(t)))
	newScope := []string{"api://added-elsewhere/read"}
	if _, err := other.AcquireTokenSilent(ctx, newScope, confidential.WithSilentAccount(a)); err != nil {
		t.Fatal(err)
	}
	reqs := idp.Requests()
	deadline := time.Now().Add(30 * time.Second)
	for {
		// The notice may travel (Redis); it arrives within the bound.
		_, err := app.AcquireTokenSilent(ctx, newScope, confidential.WithSilentAccount(a))
		if err == nil && idp.Requests().Sub(reqs).Token == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the token added by another process was not seen: %v", err)
		}
		reqs = idp.Requests()
		time.Sleep(time.Millisecond)
	}
}

// SignOut: RemovePartition on one replica signs the user out on every
// replica, and a replica that keeps getting tokens for the user while it
// happens does not bring the partition back. MSAL's RemoveAccount (which
// names no partition) also reaches the user's partition.
func SignOut(t *testing.T, newStore NewStore) {
	idp := IDP(t)
	ctx := Ctx(t)
	ca, cb := NewCache(t, newStore(t)), NewCache(t, newStore(t))
	appA, appB := WebApp(t, idp, ca), WebApp(t, idp, cb)
	alice := SignIn(t, ctx, idp, appA, User(0), UserScope)
	if err := Silent(ctx, appB, alice); err != nil {
		t.Fatalf("replica B does not share alice's tokens: %v", err)
	}
	// A keeps asking for new tokens (writes) while B signs alice out.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var calls atomic.Int64
	wg.Go(func() {
		for n := 0; ; n++ {
			select {
			case <-stop:
				return
			default:
			}
			appA.AcquireTokenSilent(ctx, []string{fmt.Sprintf("api://busy-%d/read", n)}, confidential.WithSilentAccount(alice))
			calls.Add(1)
		}
	})
	waitCalls := func(n int64) {
		deadline := time.Now().Add(time.Minute)
		for calls.Load() < n && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
	}
	waitCalls(3)
	if err := cb.RemovePartition(ctx, alice.HomeAccountID); err != nil {
		t.Fatal(err)
	}
	waitCalls(calls.Load() + 3)
	close(stop)
	wg.Wait()
	for name, app := range map[string]confidential.Client{"A": appA, "B": appB} {
		notServes(t, ctx, app, alice, fmt.Sprintf("replica %s, alice after sign-out", name))
	}
	reader := NewCache(t, newStore(t))
	if s := Partition(t, ctx, reader, alice.HomeAccountID); len(s.Sections["RefreshToken"])+len(s.Sections["AccessToken"]) > 0 {
		t.Errorf("the removed partition came back: %d refresh and %d access tokens",
			len(s.Sections["RefreshToken"]), len(s.Sections["AccessToken"]))
	}

	// MSAL's RemoveAccount on A reaches bob's partition.
	bob := SignIn(t, ctx, idp, appA, User(1), UserScope)
	if err := Silent(ctx, appB, bob); err != nil {
		t.Fatal(err)
	}
	acct, err := appA.Account(ctx, bob.HomeAccountID)
	if err != nil {
		t.Fatal(err)
	}
	if err := appA.RemoveAccount(ctx, acct); err != nil {
		t.Fatal(err)
	}
	if s := Partition(t, ctx, reader, bob.HomeAccountID); len(s.Sections["RefreshToken"]) > 0 {
		t.Error("RemoveAccount did not reach bob's partition")
	}
	notServes(t, ctx, appB, bob, "replica B, bob after RemoveAccount on A")
}

// notServes checks that app stops serving a from its cache within
// Coherence: a replica learns of a change made elsewhere by the store's
// notice.
func notServes(t *testing.T, ctx context.Context, app confidential.Client, a confidential.Account, what string) {
	t.Helper()
	deadline := time.Now().Add(Coherence)
	for Silent(ctx, app, a) == nil {
		if time.Now().After(deadline) {
			t.Errorf("%s: still served %v after", what, Coherence)
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// OnBehalfOf: a web API that calls a downstream API on behalf of users
// works with the Cache as without it: the second call with the same
// assertion is served from MSAL's on-behalf-of memory.
func OnBehalfOf(t *testing.T, newStore NewStore) {
	idp := IDP(t)
	ctx := Ctx(t)
	web := WebApp(t, idp, NewCache(t, newStore(t)))
	res, err := idp.AuthCodeLogin(ctx, web, WebClientID, RedirectURI, addUser(t, idp, User(0)), APIScope)
	if err != nil {
		t.Fatal(err)
	}
	for _, withCache := range []bool{false, true} {
		api := Client(t, idp, APIClientID, APISecret, "", nil)
		var c *distributed.Cache
		if withCache {
			c = NewCache(t, newStore(t))
			api = Client(t, idp, APIClientID, APISecret, "", c)
		}
		// The web API also has an app token of its own (MSAL's main store
		// then holds the app's metadata).
		if _, err := api.AcquireTokenByCredential(ctx, DaemonScope); err != nil {
			t.Fatal(err)
		}
		writes := int64(0)
		if c != nil {
			writes = c.Stats().Writes
		}
		before := idp.Requests()
		for i := range 3 {
			if _, err := api.AcquireTokenOnBehalfOf(ctx, res.AccessToken, UserScope); err != nil {
				t.Fatalf("with cache %v: call %d: %v", withCache, i, err)
			}
		}
		if d := idp.Requests().Sub(before); d.OnBehalfOfGrant != 1 {
			t.Errorf("with cache %v: %d on-behalf-of requests for 3 calls, want 1", withCache, d.OnBehalfOfGrant)
		}
		if c != nil && c.Stats().Writes != writes {
			// MSAL exports its other store under the assertion's key: nothing
			// of it belongs to the assertion.
			t.Errorf("%d partitions written for on-behalf-of calls, want 0", c.Stats().Writes-writes)
		}
	}
}

// addUser adds username to the identity provider's default tenant.
func addUser(t testing.TB, idp *fakeidp.Server, username string) string {
	t.Helper()
	if _, err := idp.AddUser(idp.Tenant(), username); err != nil {
		t.Fatal(err)
	}
	return username
}

// Logs is a slog.Handler that keeps every record, for tests that count
// what a Cache logged (slog.New(logs) for WithLogger). It is safe for
// concurrent use.
type Logs struct {
	mu      sync.Mutex
	records []slog.Record
}

func (h *Logs) Enabled(context.Context, slog.Level) bool { return true }
func (h *Logs) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, r.Clone())
	return nil
}
func (h *Logs) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *Logs) WithGroup(string) slog.Handler      { return h }

// Messages returns the messages of the records at level that contain
// contains.
func (h *Logs) Messages(level slog.Level, contains string) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, r := range h.records {
		if r.Level == level && strings.Contains(r.Message, contains) {
			out = append(out, r.Message)
		}
	}
	return out
}

// Count returns how many records at level have a message that contains
// contains.
func (h *Logs) Count(level slog.Level, contains string) int {
	return len(h.Messages(level, contains))
}

// outages counts the outage warnings: those for failures of a Failing
// store, and the others.
func (h *Logs) outages() (ours, theirs int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range h.records {
		if r.Level != slog.LevelWarn || !strings.Contains(r.Message, "unavailable") {
			continue
		}
		mine := false
		r.Attrs(func(a slog.Attr) bool {
			if err, ok := a.Value.Any().(error); ok && injected(err) {
				mine = true
			}
			return true
		})
		if mine {
			ours++
		} else {
			theirs++
		}
	}
	return ours, theirs
}

// Outage: with the store down, warm users keep getting tokens, a sign-in
// is kept and written back when the store returns, no call waits past the
// timeout, and the outage and the recovery are logged once each.
func Outage(t *testing.T, newStore NewStore) {
	idp := IDP(t)
	ctx := Ctx(t)
	f := NewFailing(newStore(t))
	logs := &Logs{}
	const timeout = 500 * time.Millisecond
	c := NewCache(t, f, distributed.WithTimeout(timeout), distributed.WithLogger(slog.New(logs)))
	app := WebApp(t, idp, c)
	accounts := SignInAll(t, ctx, idp, app, 8)
	if errs := Hammer(ctx, app, accounts, 4, 10); len(errs) > 0 {
		t.Fatal(errs[0])
	}

	for _, hang := range []bool{false, true} {
		f.Set(true, hang)
		start := time.Now()
		if errs := Hammer(ctx, app, accounts, 8, 25); len(errs) > 0 {
			t.Fatalf("store down (hang %v): %d warm silent calls failed; first: %v", hang, len(errs), errs[0])
		}
		// A user the process never saw: no token, but no hang either.
		cold := time.Now()
		cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		_, err := app.AcquireTokenSilent(cctx, UserScope, confidential.WithSilentAccount(confidential.Account{HomeAccountID: "unknown.tid"}))
		cancel()
		if err == nil {
			t.Error("a silent call for an unknown user succeeded")
		}
		if d := time.Since(cold); d > 10*timeout+5*time.Second {
			t.Errorf("hang %v: a cold call took %v with a timeout of %v", hang, d, timeout)
		}
		t.Logf("hang %v: 200 warm calls and a cold one in %v", hang, time.Since(start))
		f.Set(false, false)
		waitPending(t, c, 0)
	}

	// A sign-in during an outage is kept, then written back.
	f.Set(true, false)
	newcomer := SignIn(t, ctx, idp, app, User(100), UserScope)
	if err := Silent(ctx, app, newcomer); err != nil {
		t.Fatalf("the user who signed in during the outage: %v", err)
	}
	if n := c.Stats().Pending; n != 1 {
		t.Errorf("%d writes kept during the outage, want 1", n)
	}
	f.Set(false, false)
	waitPending(t, c, 0)
	other := WebApp(t, idp, NewCache(t, newStore(t)))
	before := idp.Requests()
	if err := Silent(ctx, other, newcomer); err != nil || idp.Requests().Sub(before).Token != 0 {
		t.Errorf("another process after the recovery: %v, %d token requests; want the written-back token", err, idp.Requests().Sub(before).Token)
	}
	// A token this process gets during an outage does not undo a sign-out
	// made elsewhere meanwhile: the write-back is dropped.
	f.Set(true, false)
	if _, err := app.AcquireTokenSilent(ctx, []string{"api://during-outage/read"}, confidential.WithSilentAccount(newcomer)); err != nil {
		t.Fatal(err)
	}
	if n := c.Stats().Pending; n != 1 {
		t.Fatalf("%d writes kept during the outage, want 1", n)
	}
	remover := NewCache(t, newStore(t))
	if err := remover.RemovePartition(ctx, newcomer.HomeAccountID); err != nil {
		t.Fatal(err)
	}
	f.Set(false, false)
	waitPending(t, c, 0)
	if s := Partition(t, ctx, NewCache(t, newStore(t)), newcomer.HomeAccountID); len(s.Sections) > 0 {
		t.Errorf("the write-back after the outage brought a removed partition back: %v", homesOf(s))
	}
	if err := Silent(ctx, app, newcomer); err == nil {
		t.Error("the process that was cut off still serves a user signed out during the outage")
	}

	// Under load, the real store may itself answer slower than the
	// timeout: the Cache rightly sees an outage of its own. Each outage,
	// ours or the store's, is logged once, and its end once.
	ours, theirs := logs.outages()
	if ours != 4 {
		t.Errorf("%d outage warnings for 4 outages (and %d of the store itself)", ours, theirs)
	}
	if theirs > 0 {
		t.Logf("the store itself was out %d times (slower than the timeout)", theirs)
	}
	if n := logs.Count(slog.LevelInfo, "available again"); n != ours+theirs {
		t.Errorf("%d recovery records for %d outages", n, ours+theirs)
	}
}

// Return: users who signed in on another process while the store was out
// are served as soon as the store answers again, by concurrent calls, not
// only once the background probe sees it back; while a store accepts calls
// but does not answer, calls for partitions the process does not hold do
// not each wait for the timeout.
func Return(t *testing.T, newStore NewStore) {
	idp := IDP(t)
	ctx := Ctx(t)
	f := NewFailing(newStore(t))
	const timeout = 500 * time.Millisecond
	c := NewCache(t, f, distributed.WithTimeout(timeout))
	app := WebApp(t, idp, c)
	accounts := SignInAll(t, ctx, idp, app, 4)
	other := WebApp(t, idp, NewCache(t, newStore(t)))

	// Half-open: once the Cache knows, one cold call may wait for the
	// timeout, the others not.
	f.Set(true, true)
	if Silent(ctx, app, confidential.Account{HomeAccountID: "unknown.tid"}) == nil {
		t.Fatal("a silent call for an unknown user succeeded")
	}
	if !c.Stats().StoreDown {
		t.Fatal("a call that timed out did not mark the store down")
	}
	const cold = 16
	var slow atomic.Int64
	var wg sync.WaitGroup
	for i := range cold {
		wg.Go(func() {
			start := time.Now()
			a := confidential.Account{HomeAccountID: fmt.Sprintf("unknown-%d.tid", i)}
			if Silent(ctx, app, a) == nil {
				t.Errorf("a silent call for an unknown user succeeded")
			}
			if time.Since(start) >= timeout*9/10 {
				slow.Add(1)
			}
		})
	}
	wg.Wait()
	if n := slow.Load(); n > 2 {
		t.Errorf("half-open store: %d of %d concurrent cold calls waited for the timeout (%v), want at most 2", n, cold, timeout)
	}
	// ... nor one after the other (sign-ins during an outage).
	start := time.Now()
	for i := range cold {
		if Silent(ctx, app, confidential.Account{HomeAccountID: fmt.Sprintf("later-%d.tid", i)}) == nil {
			t.Errorf("a silent call for an unknown user succeeded")
		}
	}
	if d := time.Since(start); d > 4*timeout {
		t.Errorf("half-open store: %d cold calls one after the other took %v with a timeout of %v, want under %v", cold, d, timeout, 4*timeout)
	}
	if errs := Hammer(ctx, app, accounts, 4, 10); len(errs) > 0 {
		t.Fatalf("half-open store: %d warm calls failed; first: %v", len(errs), errs[0])
	}

	// Refused: the background probe backs off while users sign in
	// elsewhere.
	f.Set(true, false)
	wait(t, "the Cache's probes fail a few times", func() bool { return c.Stats().Errors >= 12 })
	late := make([]confidential.Account, 4)
	for i := range late {
		late[i] = SignIn(t, ctx, idp, other, User(200+i), UserScope)
	}
	if !c.Stats().StoreDown {
		t.Fatal("the Cache does not know the store is down")
	}
	f.Set(false, false)
	back := time.Now()
	errs := make([]error, len(late))
	for i, a := range late {
		wg.Go(func() { errs[i] = Silent(ctx, app, a) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("%s, who signed in elsewhere during the outage, right after the store returned: %v", late[i].PreferredUsername, err)
		}
	}
	t.Logf("users who signed in elsewhere during the outage served %v after the store returned", time.Since(back).Round(time.Millisecond))
}

// wait waits until cond holds, for at most a minute.
func wait(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within a minute", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitPending waits until c holds want writes for later and, with want 0,
// knows the store is back.
func waitPending(t *testing.T, c *distributed.Cache, want int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for st := c.Stats(); st.Pending != want || (want == 0 && st.StoreDown); st = c.Stats() {
		if time.Now().After(deadline) {
			t.Fatalf("writes kept: %+v, want %d", c.Stats(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Expiry: user partitions are stored with the sliding TTL; an app-token
// partition with the life of its token, if shorter.
func Expiry(t *testing.T, newStore NewStore) {
	idp := IDP(t)
	ctx := Ctx(t)
	rec := NewRecorder(newStore(t))
	const ttl = 3 * time.Hour
	c := NewCache(t, rec, distributed.WithTTL(ttl))
	app := WebApp(t, idp, c)
	SignIn(t, ctx, idp, app, User(0), UserScope)
	idp.SetTokenLifetime(20 * time.Minute)
	daemon := Client(t, idp, DaemonID, "daemon-secret", "", c)
	if _, err := daemon.AcquireTokenByCredential(ctx, DaemonScope); err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var user, appTTL []time.Duration
	for key, d := range rec.TTLs {
		if key == recordfmt.MarkerKey(distributed.DefaultKeyPrefix) {
			continue // the Cache's marker, no partition
		}
		if d == ttl {
			user = append(user, d)
		} else {
			appTTL = append(appTTL, d)
		}
	}
	if len(user) != 1 || len(appTTL) != 1 {
		t.Fatalf("TTLs %v: want one user partition with %v and one app partition", rec.TTLs, ttl)
	}
	if appTTL[0] > 20*time.Minute || appTTL[0] < 15*time.Minute {
		t.Errorf("the app partition expires after %v; its token after 20m", appTTL[0])
	}
}

// Encrypted: with keys, stored values hold no token and no identifier; a
// Cache with other keys cannot read them (a miss, never MSAL's input); a
// Cache with the keys rotated still can.
func Encrypted(t *testing.T, newStore NewStore) {
	idp := IDP(t)
	ctx := Ctx(t)
	k1, k2 := make([]byte, 32), make([]byte, 32)
	k1[0], k2[0] = 1, 2
	rec := NewRecorder(newStore(t))
	app := WebApp(t, idp, NewCache(t, rec, distributed.WithEncryptionKeys(k1)))
	if _, err := idp.AddUser(idp.Tenant(), User(0)); err != nil {
		t.Fatal(err)
	}
	res, err := idp.AuthCodeLogin(ctx, app, WebClientID, RedirectURI, User(0), UserScope)
	if err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	for _, v := range rec.Values {
		for _, secret := range []string{res.AccessToken[:40], res.Account.HomeAccountID, "user000", WebClientID} {
			if strings.Contains(string(v), secret) {
				t.Errorf("a stored value shows %q", secret)
			}
		}
	}
	rec.mu.Unlock()
	wrong := NewCache(t, newStore(t), distributed.WithEncryptionKeys(k2))
	if err := Silent(ctx, WebApp(t, idp, wrong), res.Account); err == nil {
		t.Error("a Cache with another key served the token")
	}
	if st := wrong.Stats(); st.Rejected == 0 {
		t.Errorf("stats %+v: the undecryptable blob was not counted", st)
	}
	rotated := WebApp(t, idp, NewCache(t, newStore(t), distributed.WithEncryptionKeys(k2, k1)))
	before := idp.Requests()
	if err := Silent(ctx, rotated, res.Account); err != nil || idp.Requests().Sub(before).Token != 0 {
		t.Errorf("after rotation: %v", err)
	}
}
