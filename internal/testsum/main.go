// Command testsum reads `go test -json` events on standard input, prints a
// readable log (like go test -v, without the RUN/PAUSE/CONT noise), and adds
// the counts of passed, failed and skipped test cases to a counts file, one
// "pass fail skip" line per run. scripts/check.sh sums those lines into its
// closing "N passed, N failed, N skipped" line.
//
//	go test -json ./... | go run ./internal/testsum counts.txt
//
// A package that fails without a failing test (build error, panic outside a
// test, timeout) counts as one failed case. The exit status is 1 if anything
// failed.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"strings"
)

type event struct {
	Action  string
	Package string
	Test    string
	Output  string
}

type counts struct{ pass, fail, skip int }

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: testsum COUNTS-FILE < go-test-json")
		os.Exit(2)
	}
	total, err := summarize(bufio.NewScanner(os.Stdin), os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "testsum:", err)
		total.fail++
	}
	f, err := os.OpenFile(os.Args[1], os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err == nil {
		_, err = fmt.Fprintf(f, "%d %d %d\n", total.pass, total.fail, total.skip)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "testsum:", err)
		os.Exit(2)
	}
	if total.fail > 0 {
		os.Exit(1)
	}
}

// summarize copies the interesting output to w and counts test results.
func summarize(in *bufio.Scanner, w *os.File) (counts, error) {
	in.Buffer(make([]byte, 1<<20), 16<<20)
	var total counts
	failedTests := map[string]int{} // package -> failed tests
	for in.Scan() {
		line := in.Bytes()
		var e event
		if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &e) != nil {
			fmt.Fprintf(w, "%s\n", line) // not an event: e.g. a build error
			continue
		}
		switch e.Action {
		case "output":
			if !isNoise(e.Output) {
				fmt.Fprint(w, e.Output)
			}
		case "pass", "fail", "skip":
			if e.Test == "" {
				if e.Action == "fail" && failedTests[e.Package] == 0 {
					total.fail++ // the package failed, but no test did
				}
				continue
			}
			switch e.Action {
			case "pass":
				total.pass++
			case "fail":
				total.fail++
				failedTests[e.Package]++
			case "skip":
				total.skip++
			}
		}
	}
	return total, in.Err()
}

func isNoise(s string) bool {
	t := strings.TrimSpace(s)
	return strings.HasPrefix(t, "=== RUN") || strings.HasPrefix(t, "=== PAUSE") ||
		strings.HasPrefix(t, "=== CONT") || strings.HasPrefix(t, "=== NAME")
}
