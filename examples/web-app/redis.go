package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// redisServer is a throwaway redis-server on a loopback port, for the demo:
// no persistence, its files in a temporary directory.
type redisServer struct {
	cmd  *exec.Cmd
	addr string
	dir  string
	done chan struct{}
}

// startRedis starts redis-server on a free loopback port and waits until it
// answers PING. (The tests use internal/redistest; this is the demo's.)
func startRedis(ctx context.Context, exe string) (*redisServer, error) {
	dir, err := os.MkdirTemp("", "web-app-redis-")
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	r := &redisServer{addr: "127.0.0.1:" + strconv.Itoa(port), dir: dir, done: make(chan struct{})}
	r.cmd = exec.Command(exe, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "",
		"--appendonly", "no", "--dir", dir, "--loglevel", "warning")
	if err := r.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	go func() { r.cmd.Wait(); close(r.done) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := ping(r.addr); err == nil {
			return r, nil
		} else if time.Now().After(deadline) || ctx.Err() != nil {
			r.Stop()
			return nil, fmt.Errorf("redis-server did not answer on %s: %v", r.addr, err)
		}
		select {
		case <-r.done:
			r.Stop()
			return nil, errors.New("redis-server exited at start")
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// URL is the server's redis:// URL.
func (r *redisServer) URL() string { return "redis://" + r.addr }

// Stop stops the server, waits for it and removes its directory.
func (r *redisServer) Stop() {
	r.cmd.Process.Kill()
	select {
	case <-r.done:
	case <-time.After(10 * time.Second):
	}
	os.RemoveAll(r.dir)
}

func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("PING answered %q", strings.TrimSpace(line))
	}
	return nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
