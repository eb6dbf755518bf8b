package pgserver

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// children returns the processes whose parent is pid: a postmaster's
// backends and helpers, which start sessions of their own and so are not
// in its process group.
func children(pid int) []int {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	var kids []int
	for _, path := range stats {
		state, ppid, ok := readStat(path)
		if ok && ppid == pid && state != 'Z' {
			if n, err := strconv.Atoi(filepath.Base(filepath.Dir(path))); err == nil {
				kids = append(kids, n)
			}
		}
	}
	return kids
}

// alive reports whether pid runs (a zombie does not).
func alive(pid int) bool {
	state, _, ok := readStat("/proc/" + strconv.Itoa(pid) + "/stat")
	return ok && state != 'Z'
}

// readStat reads the state and the parent of a process from its
// /proc/PID/stat: "pid (comm) state ppid ...", where comm may hold spaces
// and parentheses.
func readStat(path string) (state byte, ppid int, ok bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, false
	}
	fields := strings.Fields(s[i+1:])
	if len(fields) < 2 || len(fields[0]) != 1 {
		return 0, 0, false
	}
	ppid, err = strconv.Atoi(fields[1])
	return fields[0][0], ppid, err == nil
}
