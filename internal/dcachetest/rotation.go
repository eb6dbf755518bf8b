package dcachetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"

	"github.com/msalcache/msalcache/distributed"
	"github.com/msalcache/msalcache/internal/fakeidp"
	"github.com/msalcache/msalcache/internal/recordfmt"
)

// Rotation: partitions written with [old] are resealed with new while
// replicas on [new, old] write through compare-and-set and sign a user
// out; afterwards a Cache with only [new] serves every user with no token
// request, the signed-out users stay out, and a partition sealed with a
// key nobody gave is counted and left byte for byte. The run is stopped
// after a few keys and resumed from its cursor; a second run finds nothing
// to do.
func Rotation(t *testing.T, newStore NewStore) {
	const users = 24
	idp := IDP(t)
	ctx := Ctx(t)
	kOld, kNew, kStray := randKey(t), randKey(t), randKey(t)
	prefix := "rotation-" + rand.Text()[:8] + ":"
	with := func(keys ...[]byte) []distributed.Option {
		return []distributed.Option{distributed.WithKeyPrefix(prefix), distributed.WithEncryptionKeys(keys...)}
	}
	store := newStore(t)

	// Before the rotation: every replica has [old].
	oldCache := NewCache(t, newStore(t), with(kOld)...)
	accounts := SignInAll(t, ctx, idp, WebApp(t, idp, oldCache), users)
	// accounts[0] signs out before the rotation: an old tombstone.
	if err := oldCache.RemovePartition(ctx, accounts[0].HomeAccountID); err != nil {
		t.Fatal(err)
	}
	// A partition under the prefix sealed with a key the operator does not
	// give: counted, never written.
	stray := WebApp(t, idp, NewCache(t, newStore(t), with(kStray)...))
	strayAcct := SignIn(t, ctx, idp, stray, "stray@"+fakeidp.UserDomain, UserScope)
	strayKey := recordfmt.StoreKey(prefix, strayAcct.HomeAccountID)
	strayBefore, _, err := store.Load(ctx, strayKey)
	if err != nil || strayBefore == nil {
		t.Fatalf("the stray partition is not stored: %v", err)
	}

	// The reseal's store: hooks run between its Load of a key and its
	// compare-and-set, as another replica's write would.
	hooked := &hookStore{innerStore: store, hooks: map[string]func(){}}
	reseal := func(run distributed.ResealRun, keys ...[]byte) distributed.ResealResult {
		t.Helper()
		res, err := distributed.Reseal(ctx, hooked, run, with(keys...)...)
		if err != nil {
			t.Fatalf("Reseal(%+v): %v (counted so far %+v)", run, err, res)
		}
		return res
	}
	// What dropping [old] now would cost: every partition.
	dry := reseal(distributed.ResealRun{DryRun: true}, kNew, kOld)
	if dry.OldKey != users || dry.Tombstone != 1 || dry.NoKey != 1 || dry.Current != 0 || dry.Resealed != 0 || dry.Cursor != "" {
		t.Fatalf("dry run before the rotation counted %+v; want OldKey %d (1 a tombstone), NoKey 1, nothing current or rewritten", dry, users)
	}

	// The rotation: replicas now have [new, old] and write (new scopes,
	// so new tokens) while the reseal runs, and one of them signs a user
	// out.
	rotatedCache := NewCache(t, newStore(t), with(kNew, kOld)...)
	rotated := WebApp(t, idp, rotatedCache)
	// Between the reseal's Load and its write: accounts[1] signs out on a
	// replica, and accounts[2] gets a new token there.
	signedOut, busy := accounts[1], accounts[2]
	hooked.on(recordfmt.StoreKey(prefix, signedOut.HomeAccountID), func() {
		if err := rotatedCache.RemovePartition(ctx, signedOut.HomeAccountID); err != nil {
			t.Errorf("sign-out during the reseal: %v", err)
		}
	})
	hooked.on(recordfmt.StoreKey(prefix, busy.HomeAccountID), func() {
		if _, err := rotated.AcquireTokenSilent(ctx, []string{"api://rotation-busy/read"}, confidential.WithSilentAccount(busy)); err != nil {
			t.Errorf("a write during the reseal: %v", err)
		}
	})
	first := reseal(distributed.ResealRun{Limit: 6, Batch: 3}, kNew, kOld)
	if first.Visited < 6 || first.Cursor == "" || first.Resealed == 0 {
		t.Fatalf("a run limited to 6 keys: %+v; want at least 6 visited, some rewritten, and a cursor", first)
	}
	stop := make(chan struct{})
	var writes atomic.Int64
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Go(func() {
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				a := accounts[3+(n*2+w)%(users-3)]
				scope := []string{fmt.Sprintf("api://rotation-%d/read", n%4)}
				if _, err := rotated.AcquireTokenSilent(ctx, scope, confidential.WithSilentAccount(a)); err != nil {
					t.Errorf("a live write during the reseal: %v", err)
					return
				}
				writes.Add(1)
			}
		})
	}
	for writes.Load() < 4 && ctx.Err() == nil {
		time.Sleep(time.Millisecond)
	}
	rest := reseal(distributed.ResealRun{Cursor: first.Cursor, Batch: 3}, kNew, kOld)
	close(stop)
	wg.Wait()
	t.Logf("limited run %+v; continued run %+v; %d live writes", first, rest, writes.Load())
	for _, r := range []distributed.ResealResult{first, rest} {
		if sum := r.Resealed + r.Current + r.OldKey + r.NoKey + r.Gone; sum != r.Visited {
			t.Errorf("%+v: the counts add up to %d, not the %d keys visited", r, sum, r.Visited)
		}
	}
	if rest.Cursor != "" || first.OldKey+rest.OldKey != 0 || first.NoKey+rest.NoKey != 1 || first.Gone+rest.Gone != 0 {
		t.Errorf("the two runs left cursor %q, OldKey %d, NoKey %d, Gone %d; want \"\", 0, 1 (the stray), 0",
			rest.Cursor, first.OldKey+rest.OldKey, first.NoKey+rest.NoKey, first.Gone+rest.Gone)
	}
	if hooked.pending() != 0 || first.Conflicts+rest.Conflicts < 2 {
		t.Errorf("%d writes between a load and a compare-and-set did not run, %d conflicts; want 0, at least 2", hooked.pending(), first.Conflicts+rest.Conflicts)
	}
	if got := first.Resealed + first.Current + rest.Resealed + rest.Current; got < users {
		t.Errorf("the two runs saw %d partitions that open, want at least %d", got, users)
	}

	// A second run has nothing to do.
	again := reseal(distributed.ResealRun{}, kNew, kOld)
	if again.Resealed != 0 || again.OldKey != 0 || again.NoKey != 1 || again.Current != users || again.Tombstone != 2 {
		t.Errorf("a second run %+v; want %d current (2 tombstones), NoKey 1, nothing to rewrite", again, users)
	}
	if after, _, err := store.Load(ctx, strayKey); err != nil || !bytes.Equal(after, strayBefore) {
		t.Errorf("the partition that opens with no key was changed (err %v)", err)
	}

	// The old key dropped: everyone is served from the cache, the
	// signed-out users are not.
	newOnly := NewCache(t, newStore(t), with(kNew)...)
	app := WebApp(t, idp, newOnly)
	before := idp.Requests()
	for i, a := range accounts {
		err := Silent(ctx, app, a)
		switch {
		case i == 0 || i == 1:
			if err == nil {
				t.Errorf("%s, signed out, is served with only the new key", User(i))
			}
		case err != nil:
			t.Errorf("%s with only the new key: %v", User(i), err)
		}
	}
	if d := idp.Requests().Sub(before); d.Token != 0 {
		t.Errorf("%d token requests with only the new key; want 0", d.Token)
	}
	if st := newOnly.Stats(); st.Rejected != 0 {
		t.Errorf("stats %+v: a partition did not open with the new key", st)
	}
}

func randKey(t testing.TB) []byte {
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

// innerStore names the Store a wrapper embeds (a field named Store would
// hide the method Store).
type innerStore = distributed.Store

// hookStore is a Store on which a hook runs once, after the first Load of
// its key, before the Load returns.
type hookStore struct {
	innerStore
	mu    sync.Mutex
	hooks map[string]func()
}

func (h *hookStore) on(key string, f func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.hooks[key] = f
}

func (h *hookStore) pending() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.hooks)
}

func (h *hookStore) Load(ctx context.Context, key string) ([]byte, distributed.Version, error) {
	v, ver, err := h.innerStore.Load(ctx, key)
	h.mu.Lock()
	f := h.hooks[key]
	delete(h.hooks, key)
	h.mu.Unlock()
	if f != nil {
		f()
	}
	return v, ver, err
}

func (h *hookStore) Scan(ctx context.Context, prefix, cursor string, n int) ([]string, string, error) {
	return h.innerStore.(distributed.Scanner).Scan(ctx, prefix, cursor, n)
}
