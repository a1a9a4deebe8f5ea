// Package console is the operator console (SPEC 13): one page under /ui/ on
// the admin listener that calls the admin API with the token the operator
// types in. Its files are embedded and hold no data, so they are served
// without the token; everything the page shows comes from the token-guarded
// API, masked as the API masks it (SPEC 11). It is the operator's step of
// the flow beside engine/admin, which it reaches over HTTP only.
//
// It may import the standard library only (embed for its files); never
// engine or another of its rooms, not even engine/admin.
package console

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed static
var static embed.FS

// Policy is the Content-Security-Policy of the console's files: everything
// from the admin listener itself, nothing inline, no framing. A page that
// can load nothing from elsewhere cannot leak what it shows.
const Policy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"

// Handler serves the console's files under /ui/.
func Handler() http.Handler {
	files, err := fs.Sub(static, "static")
	if err != nil {
		panic("console: " + err.Error()) // the embed directive names it
	}
	serve := http.StripPrefix("/ui/", http.FileServerFS(files))
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", Policy)
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		serve.ServeHTTP(w, req)
	})
}
