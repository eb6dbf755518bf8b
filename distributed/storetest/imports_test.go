//go:build !windows

package storetest_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestPublicImports: the suite imports nothing a user of the module cannot
// import (no internal package of this module: what distributed uses inside
// is distributed's business) and no test framework, only testing and the
// standard library.
func TestPublicImports(t *testing.T) {
	list := func(format string) []string {
		out, err := exec.Command("go", "list", "-f", format, "github.com/msalcache/msalcache/distributed/storetest").Output()
		if err != nil {
			t.Fatalf("go list: %v", err)
		}
		return strings.Fields(string(out))
	}
	imports := list(`{{join .Imports " "}}`)
	sawTesting := false
	for _, p := range imports {
		sawTesting = sawTesting || p == "testing"
		if strings.Contains(p, "/internal") {
			t.Errorf("storetest imports %s, which a store outside this module cannot import", p)
		}
		if strings.Contains(p, ".") && p != "github.com/msalcache/msalcache/distributed" {
			t.Errorf("storetest imports %s; it may import only the standard library and distributed", p)
		}
	}
	if !sawTesting {
		t.Errorf("go list shows the imports %v, without testing: the check cannot see them", imports)
	}
	for _, p := range list(`{{join .Deps " "}}`) {
		if strings.Contains(p, "testify") {
			t.Errorf("storetest depends on %s: the suite must need only testing", p)
		}
	}
}
