package msalcache

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// jsonProblem says why cache JSON does not parse without quoting any of it.
// A decoder's message may quote the value it rejects, and in a token cache
// that value can be a token: only the kind of problem and its place are
// kept.
func jsonProblem(err error) string {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax):
		return fmt.Sprintf("not MSAL cache JSON: invalid JSON near byte %d", syntax.Offset)
	case errors.As(err, &typ):
		kind, _, _ := strings.Cut(typ.Value, " ") // "number 123": the kind only
		return fmt.Sprintf("not MSAL cache JSON: a JSON %s where %s was expected", kind, typ.Type)
	}
	return "not MSAL cache JSON"
}
