package ingest_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/herald-run/herald/ingest"
)

func benchBody(n int) []byte {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = fmt.Sprintf(`{"name":"bench/user.signup","data":{"userId":"u_%d","email":"user%d@example.com","plan":"pro","n":%d}}`, i, i, i)
	}
	if n == 1 {
		return []byte(parts[0])
	}
	return []byte("[" + strings.Join(parts, ",") + "]")
}

func BenchmarkDecodeEvents(b *testing.B) {
	for _, n := range []int{1, 100} {
		body := benchBody(n)
		b.Run(fmt.Sprintf("events=%d", n), func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ingest.DecodeEvents(body, ingest.Limits{}, time.Now()); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/event")
		})
	}
}
