// Skynet and ping-pong in Go (goroutines and unbuffered channels), the
// baseline of reki-bench-skynet; run by tools/bench-runtimes.sh.
package main

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"time"
)

func skynet(c chan int64, num, size int64) {
	if size == 1 {
		c <- num
		return
	}
	rc := make(chan int64)
	var sum int64
	child := size / 10
	for i := int64(0); i < 10; i++ {
		go skynet(rc, num+i*child, child)
	}
	for i := 0; i < 10; i++ {
		sum += <-rc
	}
	c <- sum
}

func pingpong(n int) {
	ping, pong := make(chan int64), make(chan int64)
	go func() {
		for v := range ping {
			pong <- v
		}
	}()
	lat := make([]int64, n)
	t0 := time.Now()
	for i := 0; i < n; i++ {
		s := time.Now()
		ping <- int64(i)
		<-pong
		lat[i] = time.Since(s).Nanoseconds()
	}
	el := time.Since(t0).Seconds()
	close(ping)
	sort.Slice(lat, func(a, b int) bool { return lat[a] < lat[b] })
	p := func(q float64) float64 { return float64(lat[int(q*float64(n-1))]) / 1e3 }
	fmt.Printf("  pingpong: %.0f round trips/s; round trip p50 %.1f us, p99 %.1f us, p99.9 %.1f us, max %.1f us\n",
		float64(n)/el, p(0.5), p(0.99), p(0.999), float64(lat[n-1])/1e3)
}

func main() {
	size, pings, rounds := int64(1000000), 1000000, 3
	if len(os.Args) > 1 {
		rounds, _ = strconv.Atoi(os.Args[1])
	}
	for r := 0; r < rounds; r++ {
		c := make(chan int64)
		t0 := time.Now()
		go skynet(c, 0, size)
		sum := <-c
		fmt.Printf("  skynet: sum %d in %.1f ms\n", sum, float64(time.Since(t0).Microseconds())/1e3)
		pingpong(pings)
	}
}
