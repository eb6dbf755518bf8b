package distributed

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

func TestMemoryStoreCompareAndSet(t *testing.T) {
	ctx := context.Background()
	s := NewMemoryStore()
	defer s.Close()
	if v, ver, err := s.Load(ctx, "k"); v != nil || ver != 0 || err != nil {
		t.Fatalf("Load of nothing = %q, %d, %v", v, ver, err)
	}
	if err := s.Store(ctx, "k", []byte("a"), 5, 6, 0); !errors.Is(err, ErrConflict) {
		t.Fatalf("Store on a wrong base: %v, want ErrConflict", err)
	}
	if err := s.Store(ctx, "k", []byte("a"), 0, 1, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.Store(ctx, "k", []byte("b"), 0, 2, 0); !errors.Is(err, ErrConflict) {
		t.Fatalf("create over an existing value: %v, want ErrConflict", err)
	}
	if err := s.Store(ctx, "k", []byte("b"), 1, 2, 0); err != nil {
		t.Fatal(err)
	}
	if v, ver, _ := s.Load(ctx, "k"); string(v) != "b" || ver != 2 {
		t.Fatalf("Load = %q, %d; want b, 2", v, ver)
	}
	if err := s.Store(ctx, "k", []byte("c"), 2, 2, 0); err == nil {
		t.Error("a write that keeps the version was accepted")
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, err := s.Load(cctx, "k"); !errors.Is(err, context.Canceled) {
		t.Errorf("Load with a cancelled ctx: %v", err)
	}
}

// Concurrent compare-and-set increments: every one that succeeds is kept.
func TestMemoryStoreNoLostUpdate(t *testing.T) {
	ctx := context.Background()
	s := NewMemoryStore()
	defer s.Close()
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 200 {
				for {
					v, ver, err := s.Load(ctx, "n")
					if err != nil {
						t.Error(err)
						return
					}
					if s.Store(ctx, "n", append(v, 'x'), ver, NewVersion(), 0) == nil {
						break
					}
				}
			}
		})
	}
	wg.Wait()
	if v, _, _ := s.Load(ctx, "n"); len(v) != 8*200 {
		t.Errorf("%d increments kept, want %d", len(v), 8*200)
	}
}

func TestMemoryStoreExpiryAndNotify(t *testing.T) {
	ctx := context.Background()
	s := NewMemoryStore()
	defer s.Close()
	got := make(chan string, 10)
	s.(Notifier).Notify(func(k string) { got <- k })
	if err := s.Store(ctx, "k", []byte("a"), 0, 1, 50*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if k := <-got; k != "k" {
		t.Fatalf("notice for %q, want k", k)
	}
	select {
	case k := <-got:
		if k != "k" {
			t.Fatalf("notice for %q", k)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no notice of the expiry")
	}
	if v, _, _ := s.Load(ctx, "k"); v != nil {
		t.Fatal("the value outlived its TTL")
	}
	// Touch pushes the expiry back.
	if err := s.Store(ctx, "t", []byte("a"), 0, 1, time.Hour); err != nil {
		t.Fatal(err)
	}
	<-got
	if err := s.Touch(ctx, "t", 20*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	select {
	case <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("Touch did not set the new TTL")
	}
	if err := s.Touch(ctx, "absent", time.Hour); err != nil {
		t.Errorf("Touch of an absent key: %v", err)
	}
	s.Close()
	if _, _, err := s.Load(ctx, "k"); !errors.Is(err, ErrClosed) {
		t.Errorf("Load after Close: %v", err)
	}
}
