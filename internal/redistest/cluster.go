package redistest

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/msalcache/msalcache/internal/redisserver"
)

// A Cluster is a local Redis Cluster of three masters and no replicas, with
// a node timeout of 2 s.
type Cluster struct {
	Nodes []*Server
}

// StartCluster starts three cluster-enabled servers, joins them with
// redis-cli --cluster create and waits until every node reports
// cluster_state:ok. Everything is stopped when t ends.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	Require(t)
	dir := t.TempDir()
	c := &Cluster{}
	var addrs []string
	for i := range 3 {
		s := start(t, redisserver.Config{Dir: filepath.Join(dir, fmt.Sprint(i)), Cluster: true})
		c.Nodes = append(c.Nodes, s)
		addrs = append(addrs, s.Addr())
	}
	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.CommandContext(ctx, "redis-cli", args...).CombinedOutput(); err != nil {
		t.Fatalf("redistest: redis-cli --cluster create: %v\n%s", err, out)
	}
	if err := c.waitOK(ctx); err != nil {
		t.Fatalf("redistest: %v", err)
	}
	return c
}

// WaitOK waits, bounded, until every node reports cluster_state:ok (after
// a node was restarted, for example).
func (c *Cluster) WaitOK(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	if err := c.waitOK(ctx); err != nil {
		t.Fatalf("redistest: %v", err)
	}
}

// waitOK waits until every node reports cluster_state:ok.
func (c *Cluster) waitOK(ctx context.Context) error {
	for _, s := range c.Nodes {
		for {
			reply, err := s.Do("CLUSTER", "INFO")
			info, _ := reply.(string)
			state, _ := infoField(info, "cluster_state")
			if err == nil && state == "ok" {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("node %s: cluster_state %q (error %v) after %v", s.Addr(), state, err, clusterTimeout)
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return nil
}

// URL returns the cluster's URL in redisstore's form:
// redis://h1:p1?addr=h2:p2&addr=h3:p3.
func (c *Cluster) URL() string {
	var extra []string
	for _, s := range c.Nodes[1:] {
		extra = append(extra, "addr="+s.Addr())
	}
	return c.Nodes[0].URL() + "?" + strings.Join(extra, "&")
}

// Calls returns how many times the nodes together executed command (see
// Server.Calls).
func (c *Cluster) Calls(command string) int64 {
	var n int64
	for _, s := range c.Nodes {
		n += s.Calls(command)
	}
	return n
}

// AddReplica starts a server, joins it to the cluster as a replica of
// master, and waits until it has synced. The cluster fails over to it when
// master is killed (after the node timeout).
func (c *Cluster) AddReplica(t testing.TB, master *Server) *Server {
	t.Helper()
	id, err := master.Do("CLUSTER", "MYID")
	if err != nil {
		t.Fatalf("redistest: CLUSTER MYID: %v", err)
	}
	r := start(t, redisserver.Config{Dir: filepath.Join(t.TempDir(), "replica"), Cluster: true})
	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "redis-cli", "--cluster", "add-node", r.Addr(), master.Addr(),
		"--cluster-slave", "--cluster-master-id", id.(string)).CombinedOutput()
	if err != nil {
		t.Fatalf("redistest: redis-cli --cluster add-node: %v\n%s", err, out)
	}
	c.Nodes = append(c.Nodes, r)
	for {
		reply, err := r.Do("INFO", "replication")
		info, _ := reply.(string)
		if status, _ := infoField(info, "master_link_status"); err == nil && status == "up" {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("redistest: the replica %s did not sync with %s within %v", r.Addr(), master.Addr(), clusterTimeout)
		case <-time.After(50 * time.Millisecond):
		}
	}
	if err := c.waitOK(ctx); err != nil {
		t.Fatalf("redistest: %v", err)
	}
	return r
}

// KeyOn returns a key whose slot the node s serves, starting from prefix.
func (c *Cluster) KeyOn(t testing.TB, s *Server, prefix string) string {
	t.Helper()
	for i := range 10000 {
		k := fmt.Sprintf("%s%d", prefix, i)
		_, err := s.Do("EXISTS", k)
		if err == nil {
			return k
		}
		if !strings.HasPrefix(err.Error(), "redis: MOVED") {
			t.Fatalf("redistest: EXISTS %s on %s: %v", k, s.Addr(), err)
		}
	}
	t.Fatalf("redistest: no key served by %s", s.Addr())
	return ""
}
