//go:build unix

package persistence

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"
)

// roleEnv names the environment variable that tells a re-executed test
// binary which child role to play.
const roleEnv = "MSALCACHE_PERSISTENCE_TEST_ROLE"

// helperCommand re-executes the test binary to run only the named test, with
// the role set in its environment (plus env).
func helperCommand(ctx context.Context, t testing.TB, test, role string, env ...string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, exe, "-test.run=^"+test+"$", "-test.v")
	cmd.Env = append(os.Environ(), roleEnv+"="+role)
	cmd.Env = append(cmd.Env, env...)
	cmd.WaitDelay = 5 * time.Second
	return cmd
}
