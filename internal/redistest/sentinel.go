package redistest

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/msalcache/msalcache/internal/redisserver"
)

// MasterSet is the name under which a Sentinel deployment's sentinels
// monitor its master.
const MasterSet = "mymaster"

// A Sentinel is a local Redis Sentinel deployment: a master, one replica
// and three sentinels (quorum 2) that fail over to the replica 1 s after
// the master stops answering.
type Sentinel struct {
	Master, Replica *Server
	Sentinels       []*Server
}

// StartSentinel starts the master (without a delay before its first
// replication), its replica and three sentinels, and waits, bounded, until
// the replica has synced and every sentinel knows the replica and the two
// other sentinels: a failover can happen. Everything is stopped when t
// ends.
func StartSentinel(t testing.TB) *Sentinel {
	t.Helper()
	dir := t.TempDir()
	d := &Sentinel{}
	d.Master = start(t, redisserver.Config{Dir: filepath.Join(dir, "master"),
		Args: []string{"--repl-diskless-sync-delay", "0"}})
	host, port, _ := net.SplitHostPort(d.Master.Addr())
	d.Replica = start(t, redisserver.Config{Dir: filepath.Join(dir, "replica"),
		Args: []string{"--replicaof", host, port}})
	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	if err := waitFor(ctx, func() (bool, string) {
		reply, err := d.Replica.Do("INFO", "replication")
		info, _ := reply.(string)
		status, _ := infoField(info, "master_link_status")
		return err == nil && status == "up", fmt.Sprintf("master_link_status %q (error %v)", status, err)
	}); err != nil {
		t.Fatalf("redistest: the replica %s did not sync with %s: %v", d.Replica.Addr(), d.Master.Addr(), err)
	}
	for i := range 3 {
		d.Sentinels = append(d.Sentinels, start(t, redisserver.Config{
			Dir: filepath.Join(dir, fmt.Sprint("sentinel", i)),
			Sentinel: []string{
				fmt.Sprintf("sentinel monitor %s %s %s 2", MasterSet, host, port),
				fmt.Sprintf("sentinel down-after-milliseconds %s 1000", MasterSet),
				fmt.Sprintf("sentinel failover-timeout %s 5000", MasterSet),
			},
		}))
	}
	for _, s := range d.Sentinels {
		if err := waitFor(ctx, func() (bool, string) {
			m, err := sentinelMaster(s)
			return err == nil && m["num-slaves"] == "1" && m["num-other-sentinels"] == "2",
				fmt.Sprintf("SENTINEL MASTER: %v (error %v)", m, err)
		}); err != nil {
			t.Fatalf("redistest: sentinel %s: %v", s.Addr(), err)
		}
	}
	return d
}

// URL returns the deployment's URL in redisstore's form:
// redis://s1:p1?addr=s2:p2&addr=s3:p3&master_set=mymaster.
func (d *Sentinel) URL() string {
	u := d.Sentinels[0].URL() + "?"
	for _, s := range d.Sentinels[1:] {
		u += "addr=" + s.Addr() + "&"
	}
	return u + "master_set=" + MasterSet
}

// MasterAddr returns the master's address as the first sentinel that
// answers knows it.
func (d *Sentinel) MasterAddr() (string, error) {
	var last error
	for _, s := range d.Sentinels {
		reply, err := s.Do("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MasterSet)
		if err != nil {
			last = err
			continue
		}
		if hp, ok := reply.([]any); ok && len(hp) == 2 {
			h, _ := hp[0].(string)
			p, _ := hp[1].(string)
			return net.JoinHostPort(h, p), nil
		}
		last = fmt.Errorf("SENTINEL GET-MASTER-ADDR-BY-NAME: %v", reply)
	}
	return "", last
}

// sentinelMaster returns SENTINEL MASTER's fields.
func sentinelMaster(s *Server) (map[string]string, error) {
	reply, err := s.Do("SENTINEL", "MASTER", MasterSet)
	if err != nil {
		return nil, err
	}
	fields, _ := reply.([]any)
	m := map[string]string{}
	for i := 0; i+1 < len(fields); i += 2 {
		k, _ := fields[i].(string)
		switch v := fields[i+1].(type) {
		case string:
			m[k] = v
		case int64:
			m[k] = strconv.FormatInt(v, 10)
		}
	}
	return m, nil
}

// waitFor polls cond every 50 ms until it holds or ctx ends; the error
// then carries cond's last description.
func waitFor(ctx context.Context, cond func() (bool, string)) error {
	for {
		ok, what := cond()
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s after %v", what, clusterTimeout)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
