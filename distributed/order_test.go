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
	began, alive := req2(l.request(dones[0], now))
	if !alive || began.After(t0) {
		t.Errorf("the request that no longer fits: began %v after its read, alive %v; want at or before it, alive", began.Sub(t0), alive)
	}
	if began, alive := req2(l.request(dones[logSlots], now)); !alive || !began.Equal(t0.Add(logSlots*time.Millisecond)) {
		t.Errorf("the last request: began %v, alive %v", began.Sub(t0), alive)
	}
	// A sign-in: read the tombstone only, after the others ended.
	for _, cancel := range cancels {
		cancel()
	}
	var fresh readLog
	for range 3 * logSlots {
		ctx, cancel := context.WithCancel(context.Background())
		fresh.read(reader{ctx.Done(), t0}, true)
		cancel()
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fresh.read(reader{ctx.Done(), now}, false)
	if began, alive := req2(fresh.request(ctx.Done(), now)); alive || !began.Equal(now) {
		t.Errorf("a sign-in after %d ended requests: began %v, alive %v; want now, not alive", 3*logSlots, began.Sub(t0), alive)
	}
	// Anonymous requests: the earliest alive read within inFlight.
	var anon readLog
	anon.read(reader{nil, t0}, true)
	anon.read(reader{nil, t0.Add(10 * time.Second)}, true)
	if began, alive := req2(anon.request(nil, t0.Add(20*time.Second))); !alive || !began.Equal(t0) {
		t.Errorf("anonymous: began %v, alive %v", began.Sub(t0), alive)
	}
	if began, alive := req2(anon.request(nil, t0.Add(40*time.Second))); !alive || !began.Equal(t0.Add(5*time.Second)) {
		t.Errorf("anonymous, 40 s on: began %v, alive %v; want 5s (inFlight ago), alive", began.Sub(t0), alive)
	}
	if _, alive := req2(anon.request(nil, t0.Add(10*time.Second+inFlight))); alive {
		t.Error("anonymous: a read inFlight ago still counts")
	}
}

func req2(r requestReads) (time.Time, bool) { return r.began, r.alive }

// A request that read the partition alive before its last read (a silent
// call that refreshes: Replace at its start, again before its Export) is a
// refresh; one that read it only once (a sign-in) is not, even when it
// found it alive (a replica that did not know of the sign-out).
func TestReadLogRefresh(t *testing.T) {
	t0 := time.Now()
	var l readLog
	refresh, cancel := context.WithCancel(context.Background())
	defer cancel()
	signIn, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	l.read(reader{refresh.Done(), t0}, true)
	l.read(reader{signIn.Done(), t0.Add(time.Millisecond)}, true)
	l.read(reader{refresh.Done(), t0.Add(2 * time.Millisecond)}, true)
	now := t0.Add(time.Second)
	if r := l.request(refresh.Done(), now); !r.refresh || !r.alive {
		t.Errorf("the refresh: %+v, want a refresh", r)
	}
	if r := l.request(signIn.Done(), now); r.refresh || !r.alive {
		t.Errorf("the sign-in: %+v, want alive and not a refresh", r)
	}
	var anon readLog
	anon.read(reader{nil, t0}, true)
	if r := anon.request(nil, now); !r.refresh {
		t.Errorf("an anonymous request after an alive read: %+v, want judged a refresh", r)
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

// order's rules, one case each (see order.go).
func TestOrder(t *testing.T) {
	t0 := time.UnixMilli(1_800_000_000_000)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	snap := func(js string) *msaljson.Snapshot {
		s, err := msaljson.Parse([]byte(js), nil)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	old := snap(`{"AccessToken":{"old":{"home_account_id":"u.t","secret":"old"}},"RefreshToken":{"rt":{"home_account_id":"u.t","secret":"rt"}},"Account":{"a":{"home_account_id":"u.t"}},"AppMetadata":{"m":{"client_id":"c"}}}`)
	signIn := snap(`{"AccessToken":{"old":{"home_account_id":"u.t","secret":"old"},"new":{"home_account_id":"u.t","secret":"new"}},"RefreshToken":{"rt":{"home_account_id":"u.t","secret":"rt"}},"Account":{"a":{"home_account_id":"u.t"}},"AppMetadata":{"m":{"client_id":"c"}}}`)
	tomb := record{gen: 7, removed: true, at: at(10), snap: msaljson.Empty}
	live := record{gen: 8, at: at(20), after: at(10), snap: old}
	never := record{gen: 9, at: at(0), snap: old}
	write := func(key string, began int) *pendingWrite {
		return &pendingWrite{key: key, base: old, ours: signIn, began: at(began)}
	}
	remove := func(key string, began int, kept bool) *pendingWrite {
		return &pendingWrite{key: key, remove: true, began: at(began), kept: kept}
	}
	refreshOf := func(w *pendingWrite) *pendingWrite { w.refresh = true; return w }
	onTomb := func(w *pendingWrite) *pendingWrite { w.baseGen = tomb.gen; return w }
	const user, app = "u.t", "c_t_AppTokenCache"
	for _, tc := range []struct {
		name   string
		w      *pendingWrite
		theirs record
		exists bool
		want   verdict
		check  func(record) bool
	}{
		{"a write into nothing creates", write(user, 5), record{}, false, storeIt, func(r record) bool { return !r.removed && r.at.Equal(at(5)) }},
		{"a write begun before the sign-out is dropped", write(user, 9), tomb, true, dropIt, nil},
		{"a write begun after the sign-out is a new generation of what it changed", write(user, 11), tomb, true, storeIt, func(r record) bool {
			s := r.snap.Sections
			return r.gen != tomb.gen && r.after.Equal(at(10)) && r.at.Equal(at(11)) &&
				s["AccessToken"]["new"] != "" && s["AccessToken"]["old"] == "" && len(s["RefreshToken"]) == 0 &&
				len(s["Account"]) == 1 && len(s["AppMetadata"]) == 1
		}},
		{"a write begun before the removal a generation follows is dropped", write(user, 10), live, true, dropIt, nil},
		{"a refresh begun after the sign-out (a replica that did not know) is dropped", refreshOf(write(user, 11)), tomb, true, dropIt, nil},
		{"a sign-in based on the tombstone, in its millisecond, is a new generation", onTomb(write(user, 10)), tomb, true, storeIt, func(r record) bool {
			return !r.removed && r.gen != tomb.gen && r.after.Equal(at(10)) && r.snap.Sections["AccessToken"]["new"] != ""
		}},
		{"a refresh based on the tombstone is dropped", refreshOf(onTomb(write(user, 11))), tomb, true, dropIt, nil},
		{"a refresh begun after a generation began merges", refreshOf(write(user, 25)), live, true, storeIt, nil},
		{"a refresh begun before a generation began (after the removal it follows) is dropped", refreshOf(write(user, 15)), live, true, dropIt, nil},
		{"a write begun before its generation began makes it begin then", write(user, 15), live, true, storeIt, func(r record) bool { return r.gen == live.gen && r.at.Equal(at(15)) }},
		{"an app refresh into a tombstone is stored", refreshOf(write(app, 11)), tomb, true, storeIt, nil},
		{"a write begun after it merges", write(user, 15), live, true, storeIt, func(r record) bool { return r.gen == live.gen && r.snap.Sections["AccessToken"]["new"] != "" }},
		{"a write into a generation that follows no removal merges", write(user, 1), never, true, storeIt, nil},
		{"an app write into a tombstone is stored", write(app, 9), tomb, true, storeIt, nil},
		{"an app write begun before the removal a generation follows merges", write(app, 10), live, true, storeIt, nil},
		{"a removal tombstones a generation begun before it", remove(user, 25, true), live, true, storeIt, func(r record) bool { return r.removed && r.at.Equal(at(25)) }},
		{"a kept removal yields to a sign-in after it, which then follows it", remove(user, 15, true), live, true, yielded, func(r record) bool {
			return r.gen == live.gen && !r.removed && r.at.Equal(at(20)) && r.after.Equal(at(15))
		}},
		{"a kept removal before the removal a generation follows is dropped", remove(user, 5, true), live, true, dropIt, nil},
		{"a removal called now removes whatever is stored", remove(user, 15, false), live, true, storeIt, func(r record) bool { return r.removed && r.at.After(live.at) }},
		{"a kept app removal removes", remove(app, 15, true), live, true, storeIt, nil},
		{"an earlier removal leaves a later tombstone", remove(user, 5, true), tomb, true, unchanged, nil},
		{"a later removal replaces a tombstone", remove(user, 12, true), tomb, true, storeIt, func(r record) bool { return r.at.Equal(at(12)) }},
		{"a removal of nothing tombstones", remove(user, 12, true), record{}, false, storeIt, func(r record) bool { return r.removed }},
	} {
		got, v := order(tc.w, tc.theirs, tc.exists)
		if v != tc.want || (v == storeIt && tc.check != nil && !tc.check(got)) {
			t.Errorf("%s: verdict %d, record %+v (%s)", tc.name, v, got, got.snap.Raw)
		}
	}
}
