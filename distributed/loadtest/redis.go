package main

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Bounds of the waits for redis-server.
const (
	redisStartTimeout = 30 * time.Second
	redisExitTimeout  = 10 * time.Second
)

// redisServer is a redis-server process the command started, with an
// append-only file in dir so that its data survives a kill.
type redisServer struct {
	port   int
	dir    string
	cmd    *exec.Cmd
	exited chan struct{}
}

// startRedis starts redis-server on a free port of 127.0.0.1 in dir.
func startRedis(dir string) (*redisServer, error) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		return nil, errors.New("redis-server is not on PATH: install the Debian package redis-server, or pass --redis URL")
	}
	var lastErr error
	for range 5 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		s := &redisServer{port: port, dir: dir}
		if lastErr = s.launch(); lastErr == nil {
			return s, nil
		}
	}
	return nil, lastErr
}

func (s *redisServer) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }
func (s *redisServer) url() string  { return "redis://" + s.addr() }

func (s *redisServer) launch() error {
	logPath := filepath.Join(s.dir, "redis.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logFile.Close()
	cmd := exec.Command("redis-server", "--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "yes", "--dir", s.dir)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting redis-server: %w", err)
	}
	s.cmd, s.exited = cmd, make(chan struct{})
	go func(exited chan struct{}) {
		_ = cmd.Wait()
		close(exited)
	}(s.exited)
	deadline := time.Now().Add(redisStartTimeout)
	for {
		if ping(s.addr()) == nil {
			return nil
		}
		select {
		case <-s.exited:
			log, _ := os.ReadFile(logPath)
			return fmt.Errorf("redis-server on port %d exited at start; the end of its log:\n%s", s.port, tail(log))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.kill()
			return fmt.Errorf("redis-server on port %d did not answer PING within %v", s.port, redisStartTimeout)
		}
	}
}

// kill kills the server (SIGKILL: no shutdown, no last save) and waits for
// it to exit.
func (s *redisServer) kill() error {
	select {
	case <-s.exited:
		return nil
	default:
	}
	_ = s.cmd.Process.Kill()
	select {
	case <-s.exited:
		return nil
	case <-time.After(redisExitTimeout):
		return fmt.Errorf("redis-server (pid %d) did not exit within %v of SIGKILL", s.cmd.Process.Pid, redisExitTimeout)
	}
}

// restart starts the server again on the same port and directory: it
// reads its append-only file back.
func (s *redisServer) restart() error {
	if err := s.kill(); err != nil {
		return err
	}
	return s.launch()
}

// ping sends PING on a new connection and expects PONG (not LOADING).
func ping(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(line) != "+PONG" {
		return fmt.Errorf("PING: %q", strings.TrimSpace(line))
	}
	return nil
}

func tail(b []byte) string {
	const n = 2000
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
