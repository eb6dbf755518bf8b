// Package redact keeps passwords out of what the stores print: their
// errors quote a URL only through URL.
package redact

import "strings"

// URL replaces the password of a URL with "xxxxx": what the stores' URL
// parsers read as the password, from the first ":" after the scheme to the
// last "@". A URL without a password is returned as it is.
func URL(raw string) string {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return raw
	}
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return raw
	}
	user, _, hasPassword := strings.Cut(rest[:at], ":")
	if !hasPassword {
		return raw
	}
	return scheme + "://" + user + ":xxxxx" + rest[at:]
}
