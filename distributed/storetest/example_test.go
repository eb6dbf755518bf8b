package storetest_test

import (
	"testing"

	"github.com/msalcache/msalcache/distributed"
	"github.com/msalcache/msalcache/distributed/storetest"
)

// The suite run on the memory store. A store whose clients are separate
// connections returns a new client from the inner function each time; the
// memory store's clients are all the one store.
func ExampleRun() {
	conformance := func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) func() distributed.Store {
			s := distributed.NewMemoryStore()
			t.Cleanup(func() { s.Close() })
			return func() distributed.Store { return s }
		})
	}
	_ = conformance // in a _test.go file: func TestConformance(t *testing.T) { ... }
}
