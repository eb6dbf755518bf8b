package lock

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/gofrs/flock"
)

// reportCPU reports the CPU time per operation since start (Unix), which a
// busy machine changes less than the time per operation: a benchmark that
// waits for a CPU shares it with other programs.
func reportCPU(b *testing.B, start time.Duration) {
	if start == 0 {
		return
	}
	b.ReportMetric(float64(processCPU()-start)/float64(b.N), "cpu-ns/op")
}

// BenchmarkLock: an uncontended Lock and unlock of this package.
func BenchmarkLock(b *testing.B) {
	l := New(lockPath(b))
	ctx := context.Background()
	defer reportCPU(b, processCPU())
	for b.Loop() {
		unlock, err := l.Lock(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if err := unlock(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFlock: an uncontended Lock and Unlock of bare gofrs/flock on the
// same file system, the floor BenchmarkLock is compared with.
func BenchmarkFlock(b *testing.B) {
	fl := flock.New(lockPath(b))
	defer reportCPU(b, processCPU())
	for b.Loop() {
		if err := fl.Lock(); err != nil {
			b.Fatal(err)
		}
		if err := fl.Unlock(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkContended: 4 processes take turns; reports acquisitions per
// second over all of them.
func BenchmarkContended(b *testing.B) {
	const procs = 4
	path := lockPath(b)
	n := max(b.N/procs, 1)
	var hs []*helper
	for range procs {
		h := start(b, "bench", pathEnv+"="+path, countEnv+"="+strconv.Itoa(n))
		h.ready()
		hs = append(hs, h)
	}
	b.ResetTimer()
	begin := time.Now()
	for _, h := range hs {
		fmt.Fprintln(h.stdin)
	}
	for _, h := range hs {
		h.wait()
	}
	elapsed := time.Since(begin)
	b.StopTimer()
	b.ReportMetric(float64(n*procs)/elapsed.Seconds(), "acq/s")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkExclFloor: the system calls the protocol cannot do without on an
// uncontended lock: create the file with O_EXCL, write a pid, delete it.
// The rest of BenchmarkLock's time is the protocol's own (OS lock,
// identity checks, in-process mutex).
func BenchmarkExclFloor(b *testing.B) {
	path := lockPath(b)
	pid := []byte("12345 app")
	defer reportCPU(b, processCPU())
	for b.Loop() {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := f.WriteAt(pid, 0); err != nil {
			b.Fatal(err)
		}
		if err := os.Remove(path); err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
}
