package main

import (
	"bytes"
	"html/template"
	"net/http"
)

// page is what every page shows. Every value goes through html/template,
// which escapes it for where it appears.
type page struct {
	Replica         string
	Title, Message  string
	User            string
	Token           *tokenInfo
	API             []apiField
	SignIn, SignOut bool
}

// tokenInfo describes an access token without showing it.
type tokenInfo struct {
	Expires, In, Source string
}

var pageTemplate = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}} · web-app {{.Replica}}</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 44rem; margin: 2rem auto; padding: 0 1rem; color: #1b1b1b; }
header { display: flex; justify-content: space-between; align-items: baseline; border-bottom: 1px solid #ccc; }
.replica { background: #eef; padding: .2rem .5rem; border-radius: .3rem; }
table { border-collapse: collapse; } td, th { text-align: left; padding: .2rem .8rem .2rem 0; vertical-align: top; }
nav { margin-top: 1.5rem; padding-top: .8rem; border-top: 1px solid #ccc; }
nav a, nav button { margin-right: 1rem; }
</style>
</head>
<body>
<header><h1 id="title">{{.Title}}</h1><span class="replica" id="replica">replica {{.Replica}}</span></header>
{{with .User}}<p>Signed in as <strong id="user">{{.}}</strong></p>{{end}}
<p id="message">{{.Message}}</p>
{{with .Token}}<h2>Access token</h2>
<table id="token">
<tr><th>Expires</th><td id="expires">{{.Expires}} (in {{.In}})</td></tr>
<tr><th>From</th><td id="source">{{.Source}}</td></tr>
</table>
<p>The token itself stays on the server.</p>{{end}}
{{with .API}}<h2>The downstream API says</h2>
<table id="api">{{range .}}<tr><th>{{.Name}}</th><td>{{.Value}}</td></tr>{{end}}</table>{{end}}
<nav>
<a href="/" id="home">Home</a>
<a href="/me" id="me">API page</a>
{{if .SignIn}}<a href="/signin" id="signin">Sign in</a>{{end}}
{{if .SignOut}}<form method="post" action="/signout" style="display:inline"><button type="submit" id="signout">Sign out</button></form>{{end}}
</nav>
</body>
</html>
`))

func (s *server) page(w http.ResponseWriter, r *http.Request, status int, p page) {
	p.Replica = s.name
	var b bytes.Buffer
	if err := pageTemplate.Execute(&b, p); err != nil {
		s.log.Error("web-app: rendering a page", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	b.WriteTo(w)
}
