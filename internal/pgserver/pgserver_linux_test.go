package pgserver

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// TestMain lets the test binary play the child of TestDiesWithParent.
func TestMain(m *testing.M) {
	if os.Getenv("PGSERVER_TEST_CHILD") == "1" {
		s, err := Start(context.Background(), Config{})
		if err != nil {
			fmt.Println("ERROR", err)
			os.Exit(1)
		}
		fmt.Println("PID", s.cmd.Process.Pid, s.Dir())
		time.Sleep(time.Minute) // killed by the parent test
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestDiesWithParent: a process that started a server and is killed
// (SIGKILL: no cleanup runs) takes the server with it.
func TestDiesWithParent(t *testing.T) {
	require(t)
	cmd := exec.Command(os.Args[0], "-test.run", "^$")
	cmd.Env = append(os.Environ(), "PGSERVER_TEST_CHILD=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		cmd.Process.Kill()
		t.Fatalf("the child said %q: %v", line, err)
	}
	var pid int
	var dir string
	if _, err := fmt.Sscanf(line, "PID %d %s", &pid, &dir); err != nil {
		cmd.Process.Kill()
		t.Fatalf("the child said %q", line)
	}
	defer os.RemoveAll(dir)
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("the server (pid %d) still runs 10s after the process that started it was killed", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
