//go:build !windows

package tieredtest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"

	"github.com/msalcache/msalcache/distributed"
	"github.com/msalcache/msalcache/distributed/redisstore"
	"github.com/msalcache/msalcache/internal/dcachetest"
)

// The writer that dies: a sign-out committed on the second layer whose copy
// in Redis is never written, because the writer's process ends first.

// noFirstWrites is a Redis client whose writes never happen: the process
// ends after its commit on the second layer, before its write to Redis.
type noFirstWrites struct{ inner distributed.Store }

func (s noFirstWrites) Load(ctx context.Context, key string) ([]byte, distributed.Version, error) {
	return s.inner.Load(ctx, key)
}

func (s noFirstWrites) Touch(ctx context.Context, key string, ttl time.Duration) error {
	return s.inner.Touch(ctx, key, ttl)
}

func (s noFirstWrites) Close() error { return s.inner.Close() }

var errEnded = errors.New("the process ended (test)")

func (s noFirstWrites) Store(context.Context, string, []byte, distributed.Version, distributed.Version, time.Duration) error {
	return errEnded
}

func (s noFirstWrites) Notify(f func(string)) { s.inner.(distributed.Notifier).Notify(f) }

// writerDies signs 8 users in through two replicas; a third replica signs
// one of them out and ends before Redis holds the tombstone: its writes to
// Redis never happen (killed), or Redis was down during the sign-out and
// comes back from its files, older than the second layer (restored). The
// running replicas and one started after serve the 7 others with no token
// request and never the one who signed out.
func writerDies(t *testing.T, b *backend, restored bool) {
	idp := dcachetest.IDP(t)
	ctx := dcachetest.Ctx(t)
	replicas := []confidential.Client{
		dcachetest.WebApp(t, idp, dcachetest.NewCache(t, b.open(t), distributed.WithTimeout(outageTimeout))),
		dcachetest.WebApp(t, idp, dcachetest.NewCache(t, b.open(t), distributed.WithTimeout(outageTimeout))),
	}
	accounts := dcachetest.SignInOn(t, ctx, idp, func(i int) confidential.Client { return replicas[i%2] }, 8)
	leaver, stayers := accounts[0], accounts[1:]
	for _, app := range replicas {
		if errs := dcachetest.Hammer(ctx, app, accounts, 2, 10); len(errs) > 0 {
			t.Fatal(errs[0])
		}
	}

	// The writer: its own connections to both layers.
	r, err := redisstore.Open(b.redis.URL(), redisstore.WithDialTimeout(dialTimeout))
	if err != nil {
		t.Fatal(err)
	}
	var first distributed.Store = r
	if !restored {
		first = noFirstWrites{r}
	}
	writerStore := distributed.Tiered(first, b.second(t))
	writer := dcachetest.NewCache(t, writerStore, distributed.WithTimeout(outageTimeout))
	if restored {
		b.redis.Kill()
	}
	if err := writer.RemovePartition(ctx, leaver.HomeAccountID); err != nil {
		t.Fatalf("sign-out: %v", err)
	}
	writer.Close()
	writerStore.Close() // the process ends: nothing repairs Redis
	if restored {
		b.redis.Restart()
	}
	redis := b.redisOnly(t)
	if f, s := versions(t, b, redis, leaver.HomeAccountID); f == s || f == 0 {
		t.Fatalf("Redis holds version %d of the partition, the second layer %d: the test wants a stale copy in Redis", f, s)
	}

	before := idp.Requests()
	fresh := dcachetest.WebApp(t, idp, dcachetest.NewCache(t, b.open(t)))
	for name, app := range map[string]confidential.Client{"replica 0": replicas[0], "replica 1": replicas[1], "a replica started after": fresh} {
		var err error
		for range 50 { // the running replicas hear of the sign-out within the coherence bound
			if err = dcachetest.Silent(ctx, app, leaver); err != nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err == nil {
			t.Errorf("%s serves the user who signed out (a stale copy in Redis)", name)
		}
		for _, a := range stayers {
			if err := dcachetest.Silent(ctx, app, a); err != nil {
				t.Errorf("%s, %s: %v", name, a.PreferredUsername, err)
			}
		}
	}
	if n := idp.Requests().Sub(before).Token; n != 0 {
		t.Errorf("%d token requests, want 0", n)
	}
	if f, s := versions(t, b, redis, leaver.HomeAccountID); f != s && f != 0 {
		t.Errorf("after the loads: Redis holds version %d of the partition, the second layer %d", f, s)
	}
}

func TestWriterKilledRedisPostgres(t *testing.T) {
	_, newBackend := postgres(t)
	writerDies(t, newBackend(t), false)
}

func TestRedisRestoredRedisPostgres(t *testing.T) {
	_, newBackend := postgres(t)
	writerDies(t, newBackend(t, "--appendonly", "yes", "--appendfsync", "always"), true)
}
