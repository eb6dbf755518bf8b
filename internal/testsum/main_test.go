package main

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSummarize(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want counts
	}{
		{"tests and subtests", `{"Action":"pass","Package":"p","Test":"TestA"}
{"Action":"pass","Package":"p","Test":"TestA/sub"}
{"Action":"skip","Package":"p","Test":"TestB"}
{"Action":"fail","Package":"p","Test":"TestC"}
{"Action":"fail","Package":"p"}`, counts{pass: 2, fail: 1, skip: 1}},
		{"package fails without a failing test", `{"Action":"pass","Package":"p","Test":"TestA"}
{"Action":"output","Package":"p","Output":"panic: boom\n"}
{"Action":"fail","Package":"p"}`, counts{pass: 1, fail: 1}},
		{"build error is not an event", "# p\n./x.go:1: syntax error\nFAIL p [build failed]", counts{}},
		{"passing package", `{"Action":"pass","Package":"p","Test":"TestA"}
{"Action":"pass","Package":"p"}`, counts{pass: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := os.Create(filepath.Join(t.TempDir(), "out"))
			if err != nil {
				t.Fatal(err)
			}
			defer out.Close()
			got, err := summarize(bufio.NewScanner(strings.NewReader(tt.in)), out)
			if err != nil || got != tt.want {
				t.Errorf("summarize = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}
