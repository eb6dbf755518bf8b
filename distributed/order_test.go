package distributed

import (
	"context"
	"testing"
	"time"

	"github.com/msalcache/msalcache/internal/msaljson"
)

// A request the log cannot keep apart (more than logSlots running at once)
// is judged with the anonymous ones: conservatively, never as a request
// that did not read the partition. Requests that ended free their slot.
func TestReadLogOverflow(t *testing.T) {
	t0 := time.Now()
	var l readLog
	var cancels []context.CancelFunc
	var dones []<-chan struct{}
	for i := range logSlots + 1 {
		ctx, cancel := context.WithCancel(context.Background())
		cancels = append(cancels, cancel)
		dones = append(dones, ctx.Done())
		l.read(reader{ctx.Done(), t0.Add(time.Duration(i) * time.Millisecond)}, true)
	}
	now := t0.Add(time.Second)
	began, alive := l.request(dones[0], now)
	if !alive || began.After(t0) {
		t.Errorf("the request that no longer fits: began %v after its read, alive %v; want at or before it, alive", began.Sub(t0), alive)
	}
	if began, alive := l.request(dones[logSlots], now); !alive || !began.Equal(t0.Add(logSlots*time.Millisecond)) {
		t.Errorf("the last request: began %v, alive %v", began.Sub(t0), alive)
	}
	// A sign-in: read the tombstone only, after the others ended.
	for _, cancel := range cancels {
		cancel()
	}
	var fresh readLog
	for i := range 3 * logSlots {
		ctx, cancel := context.WithCancel(context.Background())
		fresh.read(reader{ctx.Done(), t0}, true)
		cancel()
		_ = i
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fresh.read(reader{ctx.Done(), now}, false)
	if began, alive := fresh.request(ctx.Done(), now); alive || !began.Equal(now) {
		t.Errorf("a sign-in after %d ended requests: began %v, alive %v; want now, not alive", 3*logSlots, began.Sub(t0), alive)
	}
	// Anonymous requests: the earliest alive read within inFlight.
	var anon readLog
	anon.read(reader{nil, t0}, true)
	anon.read(reader{nil, t0.Add(10 * time.Second)}, true)
	if began, alive := anon.request(nil, t0.Add(20*time.Second)); !alive || !began.Equal(t0) {
		t.Errorf("anonymous: began %v, alive %v", began.Sub(t0), alive)
	}
	if began, alive := anon.request(nil, t0.Add(40*time.Second)); !alive || !began.Equal(t0.Add(5*time.Second)) {
		t.Errorf("anonymous, 40 s on: began %v, alive %v; want 5s (inFlight ago), alive", began.Sub(t0), alive)
	}
	if _, alive := anon.request(nil, t0.Add(10*time.Second+inFlight)); alive {
		t.Error("anonymous: a read inFlight ago still counts")
	}
}

// The writes kept for a partition stay within maxKept; a removal
// supersedes those before it.
func TestKeptWritesBound(t *testing.T) {
	t0 := time.Now()
	var q keptWrites
	q = q.add(&pendingWrite{key: "k", remove: true, began: t0})
	for i := range 2 * maxKept {
		s, err := msaljson.Parse([]byte(`{"AccessToken":{"a`+string(rune('a'+i))+`":{"home_account_id":"k"}}}`), nil)
		if err != nil {
			t.Fatal(err)
		}
		base := msaljson.Empty
		if len(q) > 1 {
			base = q[len(q)-1].ours
		}
		q = q.add(&pendingWrite{key: "k", base: base, ours: s, began: t0.Add(time.Duration(i+1) * time.Second)})
	}
	if len(q) != maxKept || !q[0].remove {
		t.Fatalf("%d writes kept (first a removal: %v), want %d and the removal first", len(q), q[0].remove, maxKept)
	}
	last := q[len(q)-1]
	if len(last.ours.Sections["AccessToken"]) != 1 {
		t.Errorf("the newest write holds %d tokens, want the last one", len(last.ours.Sections["AccessToken"]))
	}
	q = q.add(&pendingWrite{key: "k", remove: true, began: t0.Add(time.Hour)})
	if len(q) != 1 || !q[0].remove {
		t.Errorf("after a removal: %d writes kept", len(q))
	}
}
