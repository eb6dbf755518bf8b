package main

import (
	"bytes"
	"context"
	"os"
	"sync"
	"testing"
)

// envAsMain makes the test binary run as web-app itself: the tests run the
// program as separate processes (replicas, the daemon, the demo) without
// building it.
const envAsMain = "WEB_APP_TEST_AS_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(envAsMain) == "1" {
		os.Exit(mainWithSignals(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// syncBuffer is a bytes.Buffer safe for one writer and concurrent readers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// runIn runs web-app in this process.
func runIn(ctx context.Context, env map[string]string, args ...string) (code int, stdout, stderr string) {
	var out, errOut syncBuffer
	code = run(ctx, args, &out, &errOut, func(k string) string { return env[k] })
	return code, out.String(), errOut.String()
}
