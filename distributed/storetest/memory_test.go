package storetest_test

import (
	"testing"

	"github.com/msalcache/msalcache/distributed"
	"github.com/msalcache/msalcache/distributed/storetest"
)

// TestMemoryStore runs the suite on the embedded store, from outside the
// package as another store's tests do: every client of a backend is the one
// store.
func TestMemoryStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) func() distributed.Store {
		s := distributed.NewMemoryStore()
		t.Cleanup(func() { _ = s.Close() })
		return func() distributed.Store { return s }
	})
}
