//go:build !windows

package tieredtest

import (
	"testing"

	"github.com/msalcache/msalcache/distributed"
	"github.com/msalcache/msalcache/internal/dcachetest"
	"github.com/msalcache/msalcache/internal/storetest"
)

// The tandem of a real redis-server and a memory store: the tandem's
// behaviour against a real first layer, whatever the second.

func TestConformanceRedisMemory(t *testing.T) {
	storetest.Run(t, func(t *testing.T) func() distributed.Store {
		b := memoryBackend(t)
		return func() distributed.Store { return b.open(t) }
	})
}

func TestCacheRedisMemory(t *testing.T) {
	dcachetest.Run(t, stores(func(t *testing.T) *backend { return memoryBackend(t) }))
}

func TestHeadlineRedisMemory(t *testing.T) { headlineTest(t, memoryBackend) }

func TestHotPathRedisMemory(t *testing.T) { hotPath(t, memoryBackend(t)) }

func TestRedisKilledRedisMemory(t *testing.T) {
	redisKilled(t, memoryBackend(t, "--appendonly", "yes", "--appendfsync", "always"))
}

func TestSecondDownRedisMemory(t *testing.T) { secondDown(t, memoryBackend(t)) }
