//go:build !windows

package tieredtest

import (
	"context"
	"sync"
	"testing"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"

	"github.com/msalcache/msalcache/distributed"
	"github.com/msalcache/msalcache/internal/dcachetest"
	"github.com/msalcache/msalcache/internal/fakeidp"
)

// The headline scenario: users signed in through two replicas, some signed
// out, then the first layer loses its data.
const (
	headlineUsers    = 200
	headlineSignOuts = 20
)

// A fault makes a Redis lose its data.
type fault struct {
	name string
	do   func(t *testing.T, b *backend)
}

var faults = []fault{
	{"FLUSHALL", func(t *testing.T, b *backend) {
		if _, err := b.redis.Do("FLUSHALL"); err != nil {
			t.Fatal(err)
		}
	}},
	{"restart-without-persistence", func(t *testing.T, b *backend) {
		b.redis.Kill()
		b.redis.Restart()
	}},
}

// A replica is one app process: a Cache and, as distributed's doc
// advises for many users, a pool of confidential clients chosen by user.
type replica struct {
	cache   *distributed.Cache
	clients []confidential.Client
}

const poolSize = 10

func newReplica(t *testing.T, idp *fakeidp.Server, s distributed.Store) *replica {
	r := &replica{cache: dcachetest.NewCache(t, s)}
	for range poolSize {
		r.clients = append(r.clients, dcachetest.WebApp(t, idp, r.cache))
	}
	return r
}

// client is the client that serves user i.
func (r *replica) client(i int) confidential.Client { return r.clients[i%len(r.clients)] }

// An outcome is what one replica served after the fault.
type outcome struct {
	served, signedOut int // of the users who did not sign out
	resurrected       int // users who signed out and were served
}

// headline runs the scenario on b with replicas from open (a tandem, or
// Redis alone) and returns what the running replicas and a newly started
// one served afterwards, and the token requests that cost the identity
// provider.
func headline(t *testing.T, b *backend, open func(testing.TB) distributed.Store, f fault) (running, fresh outcome, tokenRequests int) {
	idp := dcachetest.IDP(t)
	ctx := dcachetest.Ctx(t)
	replicas := []*replica{newReplica(t, idp, open(t)), newReplica(t, idp, open(t))}
	accounts := dcachetest.SignInOn(t, ctx, idp, func(i int) confidential.Client { return replicas[i%2].client(i) }, headlineUsers)
	for i, a := range accounts[:headlineSignOuts] {
		if err := replicas[i%2].cache.RemovePartition(ctx, a.HomeAccountID); err != nil {
			t.Fatal(err)
		}
	}
	// Both replicas served everyone before the fault.
	if o := serve(ctx, t, replicas, accounts); o.served != headlineUsers-headlineSignOuts || o.resurrected != 0 {
		t.Fatalf("before the fault: %+v", o)
	}

	f.do(t, b)
	before := idp.Requests()
	running = serve(ctx, t, replicas, accounts)
	fresh = serve(ctx, t, []*replica{newReplica(t, idp, open(t))}, accounts)
	return running, fresh, idp.Requests().Sub(before).Token
}

// serve makes a silent call for every account on every replica (the
// replicas concurrently) and counts the outcomes: a user is served if
// every replica served them.
func serve(ctx context.Context, t *testing.T, replicas []*replica, accounts []confidential.Account) outcome {
	failed := make([][]bool, len(replicas))
	var wg sync.WaitGroup
	for r, rep := range replicas {
		failed[r] = make([]bool, len(accounts))
		wg.Go(func() {
			for i, a := range accounts {
				failed[r][i] = dcachetest.Silent(ctx, rep.client(i), a) != nil
			}
		})
	}
	wg.Wait()
	var o outcome
	for i := range accounts {
		any, all := false, true
		for r := range replicas {
			any = any || !failed[r][i]
			all = all && !failed[r][i]
		}
		switch {
		case i < headlineSignOuts && any:
			o.resurrected++
		case i >= headlineSignOuts && all:
			o.served++
		case i >= headlineSignOuts:
			o.signedOut++
		}
	}
	return o
}

// headlineTest is the headline test on the tandem over newBackend: after
// each fault the users who did not sign out are served silently, with no
// token request, by the running replicas and by a new one, and those who
// signed out stay signed out. The same scenario on Redis alone is logged.
func headlineTest(t *testing.T, newBackend func(t testing.TB, args ...string) *backend) {
	for _, f := range faults {
		t.Run("tandem/"+f.name, func(t *testing.T) {
			b := newBackend(t)
			running, fresh, tokens := headline(t, b, b.open, f)
			t.Logf("Tiered(redis, %s) after %s: running replicas %+v, new replica %+v (signed out before the fault: %d of %d); %d token requests",
				b.name, f.name, running, fresh, headlineSignOuts, headlineUsers, tokens)
			for name, o := range map[string]outcome{"the running replicas": running, "a new replica": fresh} {
				if o.served != headlineUsers-headlineSignOuts || o.resurrected != 0 {
					t.Errorf("%s after %s: %d of %d users served, %d signed out; %d of %d who signed out served again",
						name, f.name, o.served, headlineUsers-headlineSignOuts, o.signedOut, o.resurrected, headlineSignOuts)
				}
			}
			if tokens != 0 {
				t.Errorf("after %s: %d token requests at the identity provider, want 0", f.name, tokens)
			}
		})
		t.Run("redis-alone/"+f.name, func(t *testing.T) {
			b := newBackend(t)
			running, fresh, tokens := headline(t, b, b.redisOnly, f)
			out := func(o outcome) int { return o.signedOut + headlineSignOuts - o.resurrected }
			t.Logf("Redis alone after %s: signed out %d of %d users on the running replicas, %d on a new replica (%d of the %d who signed out served again); %d token requests",
				f.name, out(running), headlineUsers, out(fresh), running.resurrected+fresh.resurrected, headlineSignOuts, tokens)
		})
	}
}
