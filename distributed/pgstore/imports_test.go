//go:build !windows

package pgstore

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoPgxOutsidePgstore: neither msalcache nor distributed depends on
// pgx, so a program that does not use PostgreSQL does not compile it. The
// same listing of pgstore itself shows that the check sees pgx where it is.
func TestNoPgxOutsidePgstore(t *testing.T) {
	deps := func(pkg string) []string {
		out, err := exec.Command("go", "list", "-deps", pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		var pgx []string
		for p := range strings.FieldsSeq(string(out)) {
			if strings.HasPrefix(p, "github.com/jackc/") {
				pgx = append(pgx, p)
			}
		}
		return pgx
	}
	for _, pkg := range []string{"github.com/msalcache/msalcache", "github.com/msalcache/msalcache/distributed"} {
		if got := deps(pkg); len(got) > 0 {
			t.Errorf("%s depends on %v", pkg, got)
		}
	}
	if len(deps("github.com/msalcache/msalcache/distributed/pgstore")) == 0 {
		t.Error("go list -deps shows no pgx under pgstore: the check cannot see it")
	}
}
