package main

import (
	"io"
	"strings"
	"testing"
	"time"
)

// TestParse checks the flags' defaults, and that bad values are refused
// with an error that names the flag.
func TestParse(t *testing.T) {
	o, err := parse(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := options{procs: 4, goroutines: 16, users: 200, tenants: 10, duration: 20 * time.Second, outage: 5 * time.Second}
	if o != want {
		t.Errorf("defaults %+v, want %+v", o, want)
	}
	if o, _ := parse([]string{"--duration=8s"}, io.Discard); o.outage != 2*time.Second {
		t.Errorf("--duration=8s: outage %v, want a quarter", o.outage)
	}
	if o, _ := parse([]string{"--outage=0"}, io.Discard); o.outage != 0 {
		t.Errorf("--outage=0: outage %v, want none", o.outage)
	}
	if o, _ := parse([]string{"--redis=redis://127.0.0.1:1"}, io.Discard); o.outage != 0 {
		t.Errorf("--redis: outage %v, want none (an external Redis is not killed)", o.outage)
	}
	for _, args := range [][]string{
		{"--procs=0"}, {"--procs=65"}, {"--goroutines=0"}, {"--users=0"}, {"--tenants=-1"},
		{"--duration=500ms"}, {"--duration=2h"}, {"--outage=-1s"}, {"--duration=4s", "--outage=4s"},
		{"--outage=soon"}, {"extra"},
	} {
		_, err := parse(args, io.Discard)
		if err == nil {
			t.Errorf("%v: no error", args)
			continue
		}
		flag := strings.TrimPrefix(strings.SplitN(args[len(args)-1], "=", 2)[0], "--")
		if !strings.Contains(err.Error(), flag) {
			t.Errorf("%v: error %q does not name %s", args, err, flag)
		}
	}
}
