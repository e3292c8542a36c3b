// SPDX-License-Identifier: MIT
// A Go net/http server and client for tests/integration/runtime_go.sh, built in the test with
// CGO_ENABLED=0 (a static binary the shim cannot reach: slim-supervise serves it).
//
//	gohttp server ADDR                 answers /bytes/N with N bytes of a fixed pattern and the
//	                                   client's address (as the server saw it) in X-Peer
//	gohttp client URL REQUESTS CONC    REQUESTS GETs of URL, CONC at a time, a new connection
//	                                   each; checks every body byte; prints "ok N peers P..."
package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('a' + i%26)
	}
	return b
}

func server(addr string) {
	http.HandleFunc("/bytes/", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/bytes/"))
		if err != nil || n < 0 || n > 64<<20 {
			http.Error(w, "bad size", 400)
			return
		}
		host := r.RemoteAddr[:strings.LastIndex(r.RemoteAddr, ":")]
		w.Header().Set("X-Peer", host)
		w.Write(pattern(n))
	})
	fmt.Println("listening", addr)
	if err := http.ListenAndServe(addr, nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func client(url string, requests, conc int) {
	n, err := strconv.Atoi(url[strings.LastIndex(url, "/")+1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "URL must end in /bytes/N")
		os.Exit(2)
	}
	want := pattern(n)
	tr := &http.Transport{DisableKeepAlives: true, MaxIdleConns: 0}
	c := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	var mu sync.Mutex
	peers := map[string]int{}
	failures := 0
	jobs := make(chan int)
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range jobs {
				peer, err := fetch(c, url, want)
				mu.Lock()
				if err != nil {
					failures++
					fmt.Fprintln(os.Stderr, err)
				} else {
					peers[peer]++
				}
				mu.Unlock()
			}
		}()
	}
	for i := 0; i < requests; i++ {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	secs := time.Since(start).Seconds()
	keys := []string{}
	for k := range peers {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	fmt.Printf("ok %d failed %d peers %s rate %.2f/s\n", requests-failures, failures,
		strings.Join(keys, ","), float64(requests)/secs)
	if failures > 0 {
		os.Exit(1)
	}
}

func fetch(c *http.Client, url string, want []byte) (string, error) {
	r, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer r.Body.Close()
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return "", err
	}
	if r.StatusCode != 200 || string(body) != string(want) {
		return "", fmt.Errorf("status %d, %d bytes, want %d", r.StatusCode, len(body), len(want))
	}
	return r.Header.Get("X-Peer"), nil
}

func main() {
	if len(os.Args) == 3 && os.Args[1] == "server" {
		server(os.Args[2])
		return
	}
	if len(os.Args) == 5 && os.Args[1] == "client" {
		r, _ := strconv.Atoi(os.Args[3])
		c, _ := strconv.Atoi(os.Args[4])
		client(os.Args[2], r, c)
		return
	}
	fmt.Fprintln(os.Stderr, "usage: gohttp server ADDR | gohttp client URL REQUESTS CONC")
	os.Exit(2)
}
