//go:build !windows

package tieredtest

import (
	"testing"

	"github.com/msalcache/msalcache/distributed"
	"github.com/msalcache/msalcache/distributed/storetest"
)

// The tandem of a real redis-server and a memory store: the tandem's
// behaviour against a real first layer, whatever the second, and a second
// layer that can be made to fail without killing a server.

func TestConformanceRedisMemory(t *testing.T) {
	storetest.Run(t, func(t *testing.T) func() distributed.Store {
		b := memoryBackend(t)
		return func() distributed.Store { return b.open(t) }
	})
}

// (The Cache's behaviour tests and the headline test run on
// Tiered(redis, postgres): see postgres_test.go.)

func TestHotPathRedisMemory(t *testing.T) { hotPath(t, memoryBackend(t)) }

func TestRedisKilledRedisMemory(t *testing.T) {
	redisKilled(t, memoryBackend(t, "--appendonly", "yes", "--appendfsync", "always"))
}

func TestSecondDownRedisMemory(t *testing.T) {
	b := memoryBackend(t)
	f := b.failing(t)
	secondDown(t, b, func() { f.Set(true, false) }, func() { f.Set(false, false) })
}
