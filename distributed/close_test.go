package distributed

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/cache"
)

// heldWrites is a store whose next write of key, once armed, signals entered and
// waits for release (with ctx: also for its ctx to end), then fails as a
// store that went away does. Other calls fail while down is set.
type heldWrites struct {
	innerStore
	key     string
	armed   atomic.Bool
	withCtx bool
	entered chan struct{}
	release chan struct{}
	down    atomic.Bool
	delay   time.Duration // every write takes this long (within its ctx)
}

func newHeldWrites(withCtx bool) *heldWrites {
	return &heldWrites{innerStore: NewMemoryStore(), withCtx: withCtx, entered: make(chan struct{}), release: make(chan struct{})}
}

func (s *heldWrites) Load(ctx context.Context, key string) ([]byte, Version, error) {
	if s.down.Load() {
		return nil, 0, errRefused
	}
	return s.innerStore.Load(ctx, key)
}

func (s *heldWrites) Store(ctx context.Context, key string, value []byte, prev, next Version, ttl time.Duration) error {
	if s.armed.Load() && key == s.key && s.armed.CompareAndSwap(true, false) {
		close(s.entered)
		done := ctx.Done()
		if !s.withCtx {
			done = nil
		}
		select {
		case <-s.release:
		case <-done:
		}
		return errRefused
	}
	if s.down.Load() {
		return errRefused
	}
	if s.delay > 0 && !sleep(ctx, s.delay) {
		return ctx.Err()
	}
	return s.innerStore.Store(ctx, key, value, prev, next, ttl)
}

func (s *heldWrites) Notify(f func(string)) { s.innerStore.(Notifier).Notify(f) }

// exportHeld stores a partition through c, then starts an Export of a
// change of it that s holds in the store, and returns once the write is
// there: the client's memory, and where the Export's error will come.
func exportHeld(t *testing.T, s *heldWrites, c *Cache) (*manager, <-chan error) {
	t.Helper()
	m := &manager{}
	write(t, c, m, "home", "a")
	s.key = c.storeKey("home")
	s.armed.Store(true)
	exported := make(chan error, 1)
	m.add(t, "home", "b")
	go func() { exported <- c.Export(context.Background(), m, cache.ExportHints{PartitionKey: "home"}) }()
	<-s.entered // the write is in the store
	return m, exported
}

// TestCloseWaitsForAWriteInProgress: Close called while an Export is in
// the store waits for it; the store fails that write, so it is kept, and
// Close's last flush stores it. Before, Close returned nil at once and the
// write, kept after Close's last flush, was lost without an error.
func TestCloseWaitsForAWriteInProgress(t *testing.T) {
	s := newHeldWrites(true)
	c := newCache(t, s, WithTimeout(5*time.Second))
	m, exported := exportHeld(t, s, c)
	closed := make(chan error, 1)
	go func() { closed <- c.Close() }()
	var closeErr error
	select {
	case closeErr = <-closed:
		t.Errorf("Close returned (%v) while a write was in progress", closeErr)
		closed <- closeErr
	case <-time.After(200 * time.Millisecond):
	}
	close(s.release) // the store fails the write: it is kept
	if err := <-exported; err != nil {
		t.Errorf("Export = %v", err)
	}
	if err := <-closed; err != nil {
		t.Errorf("Close = %v", err)
	}
	if got := stored(t, c, "home"); !got.Equal(m.snapshot(t)) {
		t.Errorf("the write in progress at Close was lost: the store holds %s", got.Raw)
	}
}

// TestAWriteKeptAfterCloseIsReported: a write still in the store when
// Close's wait ends (a store that ignores its ctx), and that the store
// then fails, cannot be kept: its Export says so.
func TestAWriteKeptAfterCloseIsReported(t *testing.T) {
	s := newHeldWrites(false)
	const timeout = 200 * time.Millisecond
	c := newCache(t, s, WithTimeout(timeout))
	_, exported := exportHeld(t, s, c)
	start := time.Now()
	if err := c.Close(); err != nil {
		t.Errorf("Close = %v", err)
	}
	if d := time.Since(start); d > 3*timeout {
		t.Errorf("Close took %v with a timeout of %v", d, timeout)
	}
	close(s.release)
	err := <-exported
	if !errors.Is(err, ErrClosed) || !errors.Is(err, ErrUnavailable) {
		t.Errorf("Export of a write the store failed after Close = %v; want ErrClosed and ErrUnavailable", err)
	}
}

// TestCloseIsBounded: Close stops a write-back in progress (its store
// calls end with a ctx Close cancels) and its own last flush is bounded by
// the timeout, however many writes were kept: it returns within about
// twice the timeout and reports what it could not store.
func TestCloseIsBounded(t *testing.T) {
	s := newHeldWrites(true)
	const timeout = 300 * time.Millisecond
	c := newCache(t, s, WithTimeout(timeout))
	s.down.Store(true)
	const kept = 40
	for i := range kept {
		write(t, c, &manager{}, fmt.Sprintf("uid%d.tid", i), "a")
	}
	if n := c.Stats().Pending; n != kept {
		t.Fatalf("%d writes kept, want %d", n, kept)
	}
	s.delay = 100 * time.Millisecond // each write back takes this long
	s.down.Store(false)
	deadline := time.Now().Add(10 * time.Second)
	for c.Stats().Pending == kept { // the write-back is under way
		if time.Now().After(deadline) {
			t.Fatal("the write-back did not start")
		}
		time.Sleep(time.Millisecond)
	}
	start := time.Now()
	err := c.Close()
	d := time.Since(start)
	if d > 2*timeout+500*time.Millisecond {
		t.Errorf("Close took %v with a timeout of %v (%d writes kept)", d, timeout, kept)
	}
	if !errors.Is(err, ErrUnavailable) {
		t.Errorf("Close = %v; want the writes it could not store reported", err)
	}
	t.Logf("Close: %v in %v", err, d)
}
