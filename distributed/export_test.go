package distributed

import "time"

// WithViewForTests bounds the working set of each client (see view) to max
// partitions with the grace period grace, for the tests of package
// distributed_test.
func WithViewForTests(max int, grace time.Duration) Option { return withView(max, grace) }

// WithFlushHookForTests: see withFlushHook.
func WithFlushHookForTests(f func(key string)) Option { return withFlushHook(f) }
