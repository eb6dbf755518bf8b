package dcachetest

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"

	"github.com/msalcache/msalcache/distributed"
	"github.com/msalcache/msalcache/internal/fakeidp"
	"github.com/msalcache/msalcache/internal/msaljson"
	"github.com/msalcache/msalcache/internal/recordfmt"
)

// Keyless: a Cache without keys beside one with keys, on one store. The
// keyless one reads no sealed partition as a record or a tombstone: each
// is a miss, counted in Rejected, and logged once (the cause, not each
// partition); and a user who signs in again there (what a web app does
// when the silent call fails) does not overwrite the sealed partition: the
// Cache with keys still serves every user from the store.
func Keyless(t *testing.T, newStore NewStore) {
	const users, again = 200, 20
	idp := IDP(t)
	ctx := Ctx(t)
	key := randKey(t)
	prefix := "keyless-" + rand.Text()[:8] + ":"
	sealed := NewCache(t, newStore(t), distributed.WithKeyPrefix(prefix), distributed.WithEncryptionKeys(key))
	// Several clients, as several replicas: sign-ins are cheaper with
	// smaller working sets.
	apps := make([]confidential.Client, 8)
	for i := range apps {
		apps[i] = WebApp(t, idp, sealed)
	}
	accounts := SignInOn(t, ctx, idp, func(i int) confidential.Client { return apps[i%len(apps)] }, users)

	logs := &Logs{}
	plain := NewCache(t, newStore(t), distributed.WithKeyPrefix(prefix), distributed.WithLogger(slog.New(logs)))
	app := WebApp(t, idp, plain)
	served := 0
	for _, a := range accounts {
		if Silent(ctx, app, a) == nil {
			served++
		}
	}
	st := plain.Stats()
	if served != 0 || st.Rejected != users || st.Misses < users {
		t.Errorf("a Cache without keys served %d of %d users; stats %+v; want 0 served, Rejected %d (every sealed partition a miss, none a tombstone)",
			served, users, st, users)
	}
	// Signed in again where the tokens cannot be read: not stored over
	// the sealed partition, and the sign-in says so.
	for _, a := range accounts[:again] {
		if _, err := idp.AuthCodeLogin(ctx, app, WebClientID, RedirectURI, a.PreferredUsername, UserScope); err == nil || !strings.Contains(err.Error(), "was not stored") {
			t.Fatalf("a sign-in whose tokens could not be stored: %v; want the error that says so", err)
		}
	}
	if st := plain.Stats(); st.Withheld != again || st.Writes != 0 {
		t.Errorf("after %d sign-ins on the Cache without keys: stats %+v; want Withheld %d, Writes 0", again, st, again)
	}
	if n := logs.Count(slog.LevelWarn, "cannot read"); n != 1 {
		t.Errorf("%d warnings that partitions cannot be read, want 1 (once per cause)", n)
	}
	logs.mu.Lock()
	for _, r := range logs.records {
		text := r.Message
		r.Attrs(func(a slog.Attr) bool { text += " " + a.Value.String(); return true })
		for _, secret := range []string{accounts[0].HomeAccountID, "user0"} {
			if strings.Contains(text, secret) {
				t.Errorf("a log record shows %q: %s", secret, text)
			}
		}
	}
	logs.mu.Unlock()
	// Every user is still served, from the store, where the keys are.
	fresh := NewCache(t, newStore(t), distributed.WithKeyPrefix(prefix), distributed.WithEncryptionKeys(key))
	for i := range apps {
		apps[i] = WebApp(t, idp, fresh)
	}
	before := idp.Requests()
	lost := 0
	for i, a := range accounts {
		if Silent(ctx, apps[i%len(apps)], a) != nil {
			lost++
		}
	}
	if d := idp.Requests().Sub(before); lost != 0 || d.Token != 0 {
		t.Errorf("a Cache with the key: %d of %d users not served, %d token requests; want 0, 0", lost, users, d.Token)
	}
}

// RollingRotation: replicas on different key lists during a rolling
// deploy, two at a time (a replica still on the previous list, one on the
// next), with the interleavings that overwrote partitions: a refresh in
// flight on one replica across a write or a sign-out on the other, and a
// user signing in again on one replica whose partition the other wrote.
// Each flow runs in both directions. The documented sequence ([old] ->
// [old, new] -> [new, old], Reseal, -> [new]) loses no token, brings no
// signed-out user back and withholds nothing. The wrong ones ([old] beside
// [new, old]; [new] beside [new, old] before Reseal) lose no token either
// and bring nobody back: the replica that cannot read a partition
// withholds its write (Stats.Withheld) instead of overwriting it.
func RollingRotation(t *testing.T, newStore NewStore) {
	idp := IDP(t)
	ctx := Ctx(t)
	kOld, kNew := randKey(t), randKey(t)
	keys := func(k ...[]byte) [][]byte { return k }
	for _, sc := range []struct {
		name   string
		safe   bool
		phases []rollPhase
	}{
		{"documented", true, []rollPhase{
			{behind: keys(kOld), ahead: keys(kOld, kNew)},
			{behind: keys(kOld, kNew), ahead: keys(kNew, kOld)},
			{behind: keys(kNew, kOld), ahead: keys(kNew), resealFirst: true},
		}},
		{"old beside new-old", false, []rollPhase{{behind: keys(kOld), ahead: keys(kNew, kOld)}}},
		{"new beside new-old before Reseal", false, []rollPhase{{behind: keys(kNew, kOld), ahead: keys(kNew)}}},
	} {
		t.Run(sc.name, func(t *testing.T) {
			r := &roller{t: t, ctx: ctx, idp: idp, newStore: newStore, prefix: "rolling-" + rand.Text()[:8] + ":",
				want: map[string][]string{}}
			r.signInAll(len(sc.phases), kOld)
			for i, ph := range sc.phases {
				if ph.resealFirst {
					r.reseal(kNew, kOld)
				}
				r.phase(i, ph, sc.safe)
			}
			lost, back := r.check(kNew, kOld)
			t.Logf("%s: %d tokens lost, %d signed-out users back, %d writes withheld, %d calls not served (on the replica that could not read)",
				sc.name, lost, back, r.withheld, r.failed)
			if lost != 0 || back != 0 {
				t.Errorf("%d tokens lost, %d signed-out users back; want 0, 0", lost, back)
			}
			if sc.safe && (r.withheld != 0 || r.failed != 0) {
				t.Errorf("the documented sequence withheld %d writes and failed %d calls; want 0, 0", r.withheld, r.failed)
			}
			if !sc.safe && r.withheld == 0 {
				t.Error("the wrong sequence withheld no write: its interleavings did not happen")
			}
		})
	}
}

// A rollPhase is one step of a rolling deploy: some replicas run with
// behind, the others already with ahead.
type rollPhase struct {
	behind, ahead [][]byte
	resealFirst   bool // run Reseal([new, old]) to its end before the phase
}

// rollPer is how many users each flow of each phase and direction uses.
const rollPer = 1

// roller runs the flows of RollingRotation and records what must be found
// in the store at the end.
type roller struct {
	t        *testing.T
	ctx      context.Context
	idp      *fakeidp.Server
	newStore NewStore
	prefix   string
	users    []confidential.Account
	next     int
	want     map[string][]string // home account ID -> scopes whose access tokens must be stored
	out      []string            // home account IDs signed out
	withheld int64
	failed   int
}

const extraScope = "api://rolling-extra/read"

// signInAll signs in every user the phases use, on a replica with [old],
// each with a second access token (extraScope).
func (r *roller) signInAll(phases int, kOld []byte) {
	r.t.Helper()
	c := NewCache(r.t, r.newStore(r.t), r.opts(kOld)...)
	app := WebApp(r.t, r.idp, c)
	r.users = SignInAll(r.t, r.ctx, r.idp, app, phases*2*4*rollPer)
	for _, a := range r.users {
		if _, err := app.AcquireTokenSilent(r.ctx, []string{extraScope}, confidential.WithSilentAccount(a)); err != nil {
			r.t.Fatal(err)
		}
		r.want[a.HomeAccountID] = []string{extraScope}
	}
}

func (r *roller) opts(keys ...[]byte) []distributed.Option {
	return []distributed.Option{distributed.WithKeyPrefix(r.prefix), distributed.WithEncryptionKeys(keys...)}
}

func (r *roller) take() confidential.Account {
	a := r.users[r.next]
	r.next++
	return a
}

// replica is one replica of a phase: a Cache and a web app client on it.
type replica struct {
	c     *distributed.Cache
	app   confidential.Client
	hooks *hookStore // nil: not hooked
}

// replica starts a replica with keys. A hooked one is on a store whose
// Loads can run a hook, and which sends no change notices, so that each
// Replace loads (a Cache on a store without notices works so); the other is
// on the store itself.
func (r *roller) replica(keys [][]byte, hooked bool) replica {
	var s distributed.Store = r.newStore(r.t)
	var h *hookStore
	if hooked {
		h = &hookStore{innerStore: s, hooks: map[string]func(){}}
		s = h
	}
	c := NewCache(r.t, s, r.opts(keys...)...)
	return replica{c: c, app: WebApp(r.t, r.idp, c), hooks: h}
}

// phase runs the flows with the replica on behind as the one in flight
// (rd) and the one on ahead as the other (wr), then the other way round.
func (r *roller) phase(i int, ph rollPhase, safe bool) {
	for dir, lists := range [][2][][]byte{{ph.behind, ph.ahead}, {ph.ahead, ph.behind}} {
		rd, wr := r.replica(lists[0], true), r.replica(lists[1], false)
		tag := fmt.Sprintf("%d-%d", i, dir)
		for range rollPer {
			r.refreshAcrossWrite(rd, wr, tag, safe)
			r.refreshAcrossSignOut(rd, wr, tag)
			r.signInAgain(rd, wr, tag, true)
			r.signInAgain(rd, wr, tag, false)
		}
		r.withheld += rd.c.Stats().Withheld + wr.c.Stats().Withheld
	}
}

// silent acquires scope for a on app; a failure is counted (a replica that
// cannot read the partition has no token), not fatal.
func (r *roller) silent(app confidential.Client, a confidential.Account, scope string) bool {
	_, err := app.AcquireTokenSilent(r.ctx, []string{scope}, confidential.WithSilentAccount(a))
	if err != nil {
		r.failed++
	}
	return err == nil
}

// refreshAcrossWrite: rd reads the partition alive and asks for a new
// token; meanwhile wr stores a token of another scope. wr's token must
// stay, and so must rd's unless rd could not read the partition.
func (r *roller) refreshAcrossWrite(rd, wr replica, tag string, safe bool) {
	a := r.take()
	wScope, rScope := "api://rolling-w"+tag+"/read", "api://rolling-r"+tag+"/read"
	rd.hooks.on(recordfmt.StoreKey(r.prefix, a.HomeAccountID), func() {
		if r.silent(wr.app, a, wScope) {
			r.want[a.HomeAccountID] = append(r.want[a.HomeAccountID], wScope)
		}
	})
	if r.silent(rd.app, a, rScope) && safe {
		r.want[a.HomeAccountID] = append(r.want[a.HomeAccountID], rScope)
	}
}

// refreshAcrossSignOut: rd reads the partition alive and asks for a new
// token; meanwhile the user signs out on wr. The user must stay out.
func (r *roller) refreshAcrossSignOut(rd, wr replica, tag string) {
	a := r.take()
	rd.hooks.on(recordfmt.StoreKey(r.prefix, a.HomeAccountID), func() {
		if err := wr.c.RemovePartition(r.ctx, a.HomeAccountID); err != nil {
			r.t.Errorf("sign-out: %v", err)
		}
	})
	r.silent(rd.app, a, "api://rolling-r"+tag+"/read")
	r.out = append(r.out, a.HomeAccountID)
	delete(r.want, a.HomeAccountID)
}

// signInAgain: the user signs in again on rd (a web app's answer to a
// silent call that failed there), after a write on wr if touched. What
// the store held must stay.
func (r *roller) signInAgain(rd, wr replica, tag string, touched bool) {
	a := r.take()
	if touched {
		scope := "api://rolling-s" + tag + "/read"
		if r.silent(wr.app, a, scope) {
			r.want[a.HomeAccountID] = append(r.want[a.HomeAccountID], scope)
		}
	}
	// Where the store's partition cannot be read, the sign-in fails and
	// says so (its tokens were withheld, not stored over it).
	if _, err := r.idp.AuthCodeLogin(r.ctx, rd.app, WebClientID, RedirectURI, a.PreferredUsername, UserScope); err != nil && !strings.Contains(err.Error(), "was not stored") {
		r.t.Fatal(err)
	}
}

// reseal runs Reseal to its end.
func (r *roller) reseal(keys ...[]byte) {
	r.t.Helper()
	res, err := distributed.Reseal(r.ctx, r.newStore(r.t), distributed.ResealRun{}, r.opts(keys...)...)
	if err != nil || res.NoKey != 0 || res.OldKey != 0 {
		r.t.Fatalf("Reseal: %+v, %v", res, err)
	}
}

// check reads every partition with a Cache that opens everything and
// counts the access tokens that are not stored any more and the signed-out
// users whose partition holds tokens.
func (r *roller) check(keys ...[]byte) (lost, back int) {
	c := NewCache(r.t, r.newStore(r.t), r.opts(keys...)...)
	for home, scopes := range r.want {
		s := Partition(r.t, r.ctx, c, home)
		for _, scope := range scopes {
			if !holdsScope(r.t, s, scope) {
				lost++
			}
		}
	}
	for _, home := range r.out {
		if s := Partition(r.t, r.ctx, c, home); len(s.Sections["RefreshToken"])+len(s.Sections["AccessToken"]) > 0 {
			back++
		}
	}
	if st := c.Stats(); st.Rejected != 0 {
		r.t.Errorf("a Cache with every key rejected %d partitions", st.Rejected)
	}
	return lost, back
}

// holdsScope reports whether s holds an access token for scope.
func holdsScope(t testing.TB, s *msaljson.Snapshot, scope string) bool {
	for _, entry := range s.Sections["AccessToken"] {
		var at struct {
			Target string `json:"target"`
		}
		if err := json.Unmarshal([]byte(entry), &at); err != nil {
			t.Fatal(err)
		}
		for _, f := range strings.Fields(at.Target) {
			if f == scope {
				return true
			}
		}
	}
	return false
}
