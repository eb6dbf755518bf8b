package lock

import (
	"bytes"
	"os"
	"strconv"
	"strings"
)

// ownerLine is what this process writes into a lock file it holds:
// "pid argv0", the format of MSAL Python, after the platform's prefix
// (see contentPrefix).
func ownerLine() []byte {
	argv0 := "go"
	if len(os.Args) > 0 && os.Args[0] != "" {
		argv0 = os.Args[0]
	}
	argv0 = strings.Map(func(r rune) rune {
		if r < ' ' {
			return ' '
		}
		return r
	}, argv0)
	if len(argv0) > 200 {
		argv0 = argv0[:200]
	}
	return []byte(contentPrefix + strconv.Itoa(os.Getpid()) + " " + argv0)
}

// parsePID returns the pid at the start of a lock file, or 0 if there is
// none. It reads the formats of every sister library: a bare "pid"
// (msal-node-extensions), "pid argv0" (MSAL Python, and this package),
// "pid name" and a newline (.NET), "{pid} {argv0}" (AzureAD's Go extension,
// braces included). Leading white space is skipped.
func parsePID(b []byte) int {
	b = bytes.TrimLeft(b, " \t\r\n")
	braced := len(b) > 0 && b[0] == '{'
	if braced {
		b = b[1:]
	}
	var n int64
	i := 0
	for ; i < len(b) && '0' <= b[i] && b[i] <= '9'; i++ {
		n = n*10 + int64(b[i]-'0')
		if n > 1<<31-1 {
			return 0
		}
	}
	if i == 0 || n == 0 {
		return 0
	}
	rest := b[i:]
	if len(rest) > 0 && rest[0] == '}' {
		// The end of "{pid}", or of "pid}" when byte 0 was unreadable
		// (Windows: see readHeldAt).
		rest = rest[1:]
	} else if braced {
		return 0
	}
	if len(rest) > 0 && !strings.ContainsRune(" \t\r\n\x00", rune(rest[0])) {
		return 0
	}
	return int(n)
}
