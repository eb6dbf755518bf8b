//go:build !windows

package redistest

import (
	"testing"
	"time"
)

func TestStartKillRestart(t *testing.T) {
	s := Start(t)
	if _, err := s.Do("SET", "k", "v"); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Do("GET", "k"); err != nil || got != "v" {
		t.Fatalf("GET k = %v, %v; want v", got, err)
	}
	if n := s.Calls("set"); n != 1 {
		t.Errorf("Calls(set) = %d, want 1", n)
	}
	s.Kill()
	if _, err := s.Do("PING"); err == nil {
		t.Fatal("PING succeeded after Kill")
	}
	s.Restart()
	// No persistence: the restarted server is empty.
	if got, err := s.Do("GET", "k"); err != nil || got != nil {
		t.Fatalf("GET k after restart = %v, %v; want nil", got, err)
	}
	if _, err := s.Do("NOSUCHCOMMAND"); err == nil {
		t.Fatal("an unknown command gave no error reply")
	}
}

func TestCluster(t *testing.T) {
	c := StartCluster(t)
	// Keys of different slots land on different masters: each node
	// accepts some and redirects the rest.
	owners := map[string]bool{}
	for _, key := range []string{"a", "b", "c", "d", "e", "f", "g", "h"} {
		for _, s := range c.Nodes {
			if _, err := s.Do("SET", key, "1"); err == nil {
				owners[s.Addr()] = true
			}
		}
	}
	if len(owners) != 3 {
		t.Fatalf("keys were accepted by %d nodes, want 3", len(owners))
	}
	if n := c.Calls("set"); n < 8 {
		t.Errorf("Calls(set) = %d, want at least 8", n)
	}
	node := c.Nodes[1]
	node.Kill()
	node.Restart()
	c.WaitOK(t)
}

func TestSentinel(t *testing.T) {
	d := StartSentinel(t)
	if addr, err := d.MasterAddr(); err != nil || addr != d.Master.Addr() {
		t.Fatalf("MasterAddr = %q, %v; want %s", addr, err, d.Master.Addr())
	}
	d.Master.Kill()
	deadline := time.Now().Add(30 * time.Second)
	for {
		addr, err := d.MasterAddr()
		if err == nil && addr == d.Replica.Addr() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("30s after the master was killed, the master is %q (%v); want the replica %s", addr, err, d.Replica.Addr())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
