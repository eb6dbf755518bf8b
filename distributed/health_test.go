package distributed

import (
	"testing"
	"time"
)

// waitHealth waits until c's Health satisfies ok.
func waitHealth(t *testing.T, c *Cache, what string, ok func(Health) bool) Health {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		h := c.Health()
		if ok(h) {
			return h
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5 s: %+v", what, h)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestHealth: an outage shows in Health as soon as the store says its
// connection was lost, with no MSAL call; the writes kept meanwhile are
// counted; the store's return clears both.
func TestHealth(t *testing.T) {
	s := &flaky{inner: NewMemoryStore()}
	c := newCache(t, s, WithTimeout(time.Second))
	if h := c.Health(); !h.StoreUp || !h.DownSince.IsZero() || h.Pending != 0 || h.Closed {
		t.Fatalf("a new Cache: %+v", h)
	}
	m := &manager{}
	write(t, c, m, "uid1.tid", "a")

	before := time.Now()
	s.set(true)
	h := waitHealth(t, c, "the outage shows without a call", func(h Health) bool { return !h.StoreUp })
	if h.DownSince.Before(before) || h.DownSince.After(time.Now()) {
		t.Errorf("DownSince %v, want between %v and now", h.DownSince, before)
	}
	write(t, c, m, "uid2.tid", "b")
	if h := c.Health(); h.StoreUp || h.Pending != 1 {
		t.Errorf("a write during the outage: %+v, want down with 1 pending", h)
	}
	if c.Health().DownSince != h.DownSince {
		t.Error("DownSince moved during one outage")
	}

	s.set(false)
	waitHealth(t, c, "the return clears the outage and the writes kept", func(h Health) bool {
		return h.StoreUp && h.DownSince.IsZero() && h.Pending == 0
	})
	c.Close()
	if h := c.Health(); !h.Closed {
		t.Errorf("after Close: %+v", h)
	}
}
