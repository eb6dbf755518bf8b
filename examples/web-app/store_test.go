package main

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/msalcache/msalcache/distributed"
	"github.com/msalcache/msalcache/internal/dcachetest"
)

// TestSessionsDuringOutage: while the store does not answer (a half-open
// connection: every call waits for its timeout), a session the replica
// remembers is served from memory without asking the store on every
// lookup, a session it does not know fails within the timeout, and once
// the store answers again lookups ask it again (an ending elsewhere is
// seen).
func TestSessionsDuringOutage(t *testing.T) {
	f := dcachetest.NewFailing(distributed.NewMemoryStore())
	defer f.Close()
	seal, err := newSealer([][]byte{randomKey()}, purposeRecords)
	if err != nil {
		t.Fatal(err)
	}
	const timeout = 100 * time.Millisecond
	r := newRecords(f, seal, timeout)
	other := newRecords(f, seal, timeout) // another replica
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sid, err := r.newSession(ctx, sessionRecord{Account: "uid.tid", Username: "alice"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}

	f.Set(true, true)
	if rec, _, err := r.session(ctx, sid); err != nil || rec.Account != "uid.tid" {
		t.Fatalf("the first lookup with the store down: %+v, %v; want the remembered session", rec, err)
	}
	const lookups = 50
	before := f.Calls()
	var wg sync.WaitGroup
	for range lookups {
		wg.Go(func() {
			if rec, _, err := r.session(ctx, sid); err != nil || rec.Account != "uid.tid" {
				t.Errorf("a lookup with the store known to be down: %+v, %v", rec, err)
			}
		})
	}
	wg.Wait()
	if n := f.Calls() - before; n > 1 {
		t.Errorf("%d concurrent lookups of a remembered session made %d store calls while it was known to be down; want at most 1", lookups, n)
	}
	start := time.Now()
	if _, _, err := r.session(ctx, "unknown"); err == nil {
		t.Error("a session the replica never saw was found with the store down")
	}
	if d := time.Since(start); d > 20*timeout {
		t.Errorf("a lookup of an unknown session took %v with a timeout of %v", d, timeout)
	}

	f.Set(false, false)
	if err := other.endSession(ctx, sid, time.Hour); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, _, err := r.session(ctx, sid); errors.Is(err, errNoSession) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the session ended on another replica after the store returned is still served")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
