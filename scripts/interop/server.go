// Go net/http test server on ADDR: /missing is a 404, /stream a chunked response,
// anything else a short text answer after reading the body.
package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
)

func main() {
	addr := os.Args[1]
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		switch {
		case r.URL.Path == "/missing":
			http.NotFound(w, r)
		case r.URL.Path == "/stream":
			for i := 0; i < 5; i++ { // chunked
				fmt.Fprintf(w, "chunk %d %s\n", i, strings.Repeat("x", 1000))
				w.(http.Flusher).Flush()
			}
		default:
			w.Header().Set("Content-Type", "text/plain")
			fmt.Fprintf(w, "%s %s read %d\n", r.Method, r.URL.Path, n)
		}
	})
	http.ListenAndServe(addr, nil)
}
