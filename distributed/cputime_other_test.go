//go:build !unix

package distributed

import "time"

// cpuTime is not measured here.
func cpuTime() time.Duration { return 0 }
