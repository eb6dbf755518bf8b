package distributed_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/msalcache/msalcache/distributed"
)

// The layers the tandem's tests put under it: wrappers that share a layer
// between several tandems, flush it, pause or fail it between two steps, and
// check what reaches the first layer.

// shared is a layer that several tandems ("processes") use: closing one
// tandem does not close it (the test does).
type shared struct{ inner distributed.Store }

func (s shared) Load(ctx context.Context, key string) ([]byte, distributed.Version, error) {
	return s.inner.Load(ctx, key)
}

func (s shared) Store(ctx context.Context, key string, value []byte, prev, next distributed.Version, ttl time.Duration) error {
	return s.inner.Store(ctx, key, value, prev, next, ttl)
}

func (s shared) Touch(ctx context.Context, key string, ttl time.Duration) error {
	return s.inner.Touch(ctx, key, ttl)
}

func (s shared) Close() error { return nil }

func (s shared) Notify(f func(string)) { s.inner.(distributed.Notifier).Notify(f) }

// flushable is a memory layer whose data can be lost at once, as a Redis
// that is flushed (FLUSHALL) or restarted without persistence.
type flushable struct {
	mu        sync.Mutex
	inner     distributed.Store
	listeners []func(string)
}

func newFlushable() *flushable { return &flushable{inner: distributed.NewMemoryStore()} }

func (f *flushable) store() distributed.Store {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.inner
}

// Flush loses every key; listeners hear "" (as a Redis client's tracking
// does).
func (f *flushable) Flush() {
	s := distributed.NewMemoryStore()
	f.mu.Lock()
	old := f.inner
	f.inner = s
	for _, l := range f.listeners {
		s.(distributed.Notifier).Notify(l)
	}
	ls := f.listeners
	f.mu.Unlock()
	old.Close()
	for _, l := range ls {
		l("")
	}
}

// Restore replaces the layer's data by older, as a Redis restarted from
// files older than what was written since; listeners hear "".
func (f *flushable) Restore(older distributed.Store) {
	f.mu.Lock()
	old := f.inner
	f.inner = older
	for _, l := range f.listeners {
		older.(distributed.Notifier).Notify(l)
	}
	ls := f.listeners
	f.mu.Unlock()
	old.Close()
	for _, l := range ls {
		l("")
	}
}

func (f *flushable) Load(ctx context.Context, key string) ([]byte, distributed.Version, error) {
	return f.store().Load(ctx, key)
}

func (f *flushable) Store(ctx context.Context, key string, value []byte, prev, next distributed.Version, ttl time.Duration) error {
	return f.store().Store(ctx, key, value, prev, next, ttl)
}

func (f *flushable) Touch(ctx context.Context, key string, ttl time.Duration) error {
	return f.store().Touch(ctx, key, ttl)
}

func (f *flushable) Close() error { return f.store().Close() }

func (f *flushable) Notify(l func(string)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.listeners = append(f.listeners, l)
	f.inner.(distributed.Notifier).Notify(l)
}

// A call is one call to a layer, as hooked's hooks see it.
type call struct {
	op         string // "load", "store", "touch"
	key        string
	prev, next distributed.Version
	value      []byte
}

// hooked is a layer whose calls pass through before (which may pause or
// fail a call: a non-nil error is returned instead of the call) and after
// (told of the outcome, it returns the error the caller gets: a layer that
// took a write may still report a failure, as a connection lost before the
// reply does).
type hooked struct {
	inner  distributed.Store
	mu     sync.Mutex
	before func(ctx context.Context, c call) error
	after  func(c call, err error) error
}

func newHooked(s distributed.Store) *hooked { return &hooked{inner: s} }

func (h *hooked) Close() error { return h.inner.Close() }

func (h *hooked) setBefore(before func(context.Context, call) error) {
	h.mu.Lock()
	h.before = before
	h.mu.Unlock()
}

func (h *hooked) setAfter(after func(call, error) error) {
	h.mu.Lock()
	h.after = after
	h.mu.Unlock()
}

func (h *hooked) hooks() (func(context.Context, call) error, func(call, error) error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.before, h.after
}

func (h *hooked) do(ctx context.Context, c call, f func() error) error {
	before, after := h.hooks()
	if before != nil {
		if err := before(ctx, c); err != nil {
			return err
		}
	}
	err := f()
	if after != nil {
		err = after(c, err)
	}
	return err
}

func (h *hooked) Load(ctx context.Context, key string) (value []byte, v distributed.Version, err error) {
	err = h.do(ctx, call{op: "load", key: key}, func() error {
		value, v, err = h.inner.Load(ctx, key)
		return err
	})
	return value, v, err
}

func (h *hooked) Store(ctx context.Context, key string, value []byte, prev, next distributed.Version, ttl time.Duration) error {
	return h.do(ctx, call{op: "store", key: key, prev: prev, next: next, value: value}, func() error {
		return h.inner.Store(ctx, key, value, prev, next, ttl)
	})
}

func (h *hooked) Touch(ctx context.Context, key string, ttl time.Duration) error {
	return h.do(ctx, call{op: "touch", key: key}, func() error {
		return h.inner.Touch(ctx, key, ttl)
	})
}

func (h *hooked) Notify(f func(string)) {
	if n, ok := h.inner.(distributed.Notifier); ok {
		n.Notify(f)
	}
}

var errDown = errors.New("layer down (test)")

// gate pauses the calls it matches until it is opened: the test forces an
// interleaving by running other calls while one waits.
type gate struct {
	match   func(call) bool
	reached chan struct{} // closed when a matching call waits
	open    chan struct{}
	once    sync.Once
}

func newGate(match func(call) bool) *gate {
	return &gate{match: match, reached: make(chan struct{}), open: make(chan struct{})}
}

// before is a hooked before hook: the first matching call waits; later
// ones pass.
func (g *gate) before(ctx context.Context, c call) error {
	if !g.match(c) {
		return nil
	}
	first := false
	g.once.Do(func() { first = true })
	if !first {
		return nil
	}
	close(g.reached)
	select {
	case <-g.open:
		return nil
	case <-time.After(time.Minute):
		return errors.New("gate never opened")
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (g *gate) wait(t *testing.T) {
	t.Helper()
	select {
	case <-g.reached:
	case <-time.After(10 * time.Second):
		t.Fatal("the paused call never came")
	}
}

// committed is a check of the tandem's promise that nothing reaches the
// first layer that the second did not commit: it records what the second
// layer took, and every write that the first layer takes must be one of
// those (the same key, version and value).
type committed struct {
	lie   atomic.Bool // the second layer's next write is taken but reported failed
	mu    sync.Mutex
	took  map[string][]byte // key and version -> value
	first []call            // the writes first took
}

func newCommitted() *committed { return &committed{took: map[string][]byte{}} }

// watch wraps the two layers.
func (c *committed) watch(first, second *hooked) {
	second.setAfter(func(x call, err error) error {
		if x.op == "store" && err == nil {
			c.mu.Lock()
			c.took[fmt.Sprint(x.key, x.next)] = append([]byte(nil), x.value...)
			c.mu.Unlock()
			if c.lie.CompareAndSwap(true, false) {
				return errDown
			}
		}
		return err
	})
	first.setAfter(func(x call, err error) error {
		if x.op == "store" && err == nil {
			c.mu.Lock()
			x.value = append([]byte(nil), x.value...)
			c.first = append(c.first, x)
			c.mu.Unlock()
		}
		return err
	})
}

func (c *committed) check(t *testing.T) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	// Checked at the end: a write to second is recorded when its call
	// returns, and another tandem may copy it to first before that.
	for _, x := range c.first {
		if v, ok := c.took[fmt.Sprint(x.key, x.next)]; !ok || !bytes.Equal(v, x.value) {
			t.Errorf("the first layer took a write the second did not commit: %s version %d (that version committed by second: %v)", x.key, x.next, ok)
		}
	}
}
