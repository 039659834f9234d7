// Go net/http test client: N rounds of GET /a, POST /p (sized), POST /c (chunked),
// GET /missing, GET /stream against BASE, one keep-alive connection; prints the counts.
package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
)

func main() {
	base := os.Args[1]
	n, _ := strconv.Atoi(os.Args[2])
	codes := map[string]int{}
	for i := 0; i < n; i++ {
		reqs := []*http.Request{}
		r, _ := http.NewRequest("GET", base+"/a?i="+strconv.Itoa(i), nil)
		reqs = append(reqs, r)
		r, _ = http.NewRequest("POST", base+"/p", bytes.NewReader(bytes.Repeat([]byte("p"), 3000)))
		reqs = append(reqs, r)
		r, _ = http.NewRequest("POST", base+"/c", io.MultiReader(bytes.NewReader([]byte("abc")), bytes.NewReader(bytes.Repeat([]byte("q"), 5000))))
		reqs = append(reqs, r)
		r, _ = http.NewRequest("GET", base+"/missing", nil)
		reqs = append(reqs, r)
		r, _ = http.NewRequest("GET", base+"/stream", nil)
		reqs = append(reqs, r)
		for _, q := range reqs {
			resp, err := http.DefaultClient.Do(q)
			if err != nil {
				codes["err"]++
				continue
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			codes[fmt.Sprintf("%s %s %d", q.Method, q.URL.Path, resp.StatusCode)]++
		}
	}
	fmt.Println(codes)
}
