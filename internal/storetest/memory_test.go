package storetest

import (
	"testing"

	"github.com/msalcache/msalcache/distributed"
)

// TestMemoryStore runs the suite on the embedded store: every client of a
// backend is the one store.
func TestMemoryStore(t *testing.T) {
	Run(t, func(t *testing.T) func() distributed.Store {
		s := distributed.NewMemoryStore()
		t.Cleanup(func() { _ = s.Close() })
		return func() distributed.Store { return s }
	})
}
