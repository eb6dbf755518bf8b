package distributed_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/cache"

	"github.com/msalcache/msalcache/distributed"
	"github.com/msalcache/msalcache/internal/dcachetest"
)

// flaky passes MSAL's calls to a Cache with MSAL's memory wrapped, so that
// the next fail Unmarshal calls fail, as a transient failure would. The
// wrapper of one MSAL memory is always the same, as MSAL's is.
type flaky struct {
	*distributed.Cache
	fail    atomic.Int32
	mu      sync.Mutex
	wrapped map[any]*flakyMemory
}

type msalMemory interface {
	cache.Marshaler
	cache.Unmarshaler
}

type flakyMemory struct {
	msalMemory
	f *flaky
}

func (m *flakyMemory) Unmarshal(b []byte) error {
	if m.f.fail.Add(-1) >= 0 {
		return errors.New("transient Unmarshal failure (test)")
	}
	return m.msalMemory.Unmarshal(b)
}

func (f *flaky) wrap(m any) *flakyMemory {
	f.mu.Lock()
	defer f.mu.Unlock()
	if w, ok := f.wrapped[m]; ok {
		return w
	}
	w := &flakyMemory{m.(msalMemory), f}
	f.wrapped[m] = w
	return w
}

func (f *flaky) Replace(ctx context.Context, u cache.Unmarshaler, h cache.ReplaceHints) error {
	return f.Cache.Replace(ctx, f.wrap(u), h)
}

func (f *flaky) Export(ctx context.Context, m cache.Marshaler, h cache.ExportHints) error {
	return f.Cache.Export(ctx, f.wrap(m), h)
}

// TestOneFailedUnmarshalDoesNotFreezeAClient: after an Unmarshal fails
// once, the client is given its working set again soon (not never: its
// memory stayed frozen, and every user it did not hold failed forever).
func TestOneFailedUnmarshalDoesNotFreezeAClient(t *testing.T) {
	idp := dcachetest.IDP(t)
	ctx := dcachetest.Ctx(t)
	s := distributed.NewMemoryStore()
	t.Cleanup(func() { s.Close() })
	writer := dcachetest.WebApp(t, idp, dcachetest.NewCache(t, s))
	accounts := dcachetest.SignInAll(t, ctx, idp, writer, 2)
	f := &flaky{Cache: dcachetest.NewCache(t, s), wrapped: map[any]*flakyMemory{}}
	f.fail.Store(1)
	app := dcachetest.WebApp(t, idp, f)
	if err := dcachetest.Silent(ctx, app, accounts[0]); err == nil {
		t.Fatal("served a user whose partition MSAL refused")
	}
	start := time.Now()
	for _, a := range accounts {
		for err := dcachetest.Silent(ctx, app, a); err != nil; err = dcachetest.Silent(ctx, app, a) {
			if time.Since(start) > 10*time.Second {
				t.Fatalf("a client whose Unmarshal failed once still fails after %v: %v", time.Since(start), err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	t.Logf("served again %v after the failure", time.Since(start).Round(time.Millisecond))
	before := idp.Requests()
	if errs := dcachetest.Hammer(ctx, app, accounts, 4, 10); len(errs) > 0 {
		t.Fatal(errs[0])
	}
	if n := idp.Requests().Sub(before).Token; n != 0 {
		t.Errorf("%d token requests for users whose tokens are cached", n)
	}
}
