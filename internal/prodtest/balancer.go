package prodtest

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// Balancer is the load balancer in front of Herald's replicas: round robin
// over HTTP, and a request whose connection is refused goes to the next
// replica (nothing was sent, so nothing can be applied twice). It stands for
// the Kubernetes Service or cloud load balancer of a real deployment.
type Balancer struct {
	URL string

	mu       sync.Mutex
	backends []*url.URL
	next     atomic.Uint64
	srv      *http.Server
	ln       net.Listener
}

// NewBalancer returns a balancer with no replicas; Add them, then Start.
func NewBalancer() *Balancer { return &Balancer{} }

// Add adds a replica's base URL.
func (b *Balancer) Add(base string) {
	u, _ := url.Parse(base)
	b.mu.Lock()
	b.backends = append(b.backends, u)
	b.mu.Unlock()
}

// Start listens on a free loopback port.
func (b *Balancer) Start() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	b.ln = ln
	b.URL = "http://" + ln.Addr().String()
	dialer := &net.Dialer{Timeout: 2 * time.Second}
	transport := &http.Transport{
		MaxIdleConnsPerHost: 64,
		// Pick the replica at dial time: a refused connection tries the
		// next one, up to once per replica.
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			b.mu.Lock()
			backends := append([]*url.URL(nil), b.backends...)
			b.mu.Unlock()
			var lastErr error
			start := b.next.Add(1)
			for i := range backends {
				u := backends[(int(start)+i)%len(backends)]
				c, err := dialer.DialContext(ctx, network, u.Host)
				if err == nil {
					return c, nil
				}
				lastErr = err
			}
			return nil, lastErr
		},
	}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			// The host is a placeholder: DialContext picks the replica.
			r.Out.URL.Scheme, r.Out.URL.Host = "http", "herald"
			r.Out.Host = r.In.Host
			r.SetXForwarded()
		},
		Transport: transport,
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			status := http.StatusBadGateway
			if errors.Is(err, context.DeadlineExceeded) {
				status = http.StatusGatewayTimeout
			}
			http.Error(w, "balancer: "+err.Error(), status)
		},
	}
	b.srv = &http.Server{Handler: proxy, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = b.srv.Serve(ln) }()
	return nil
}

// Close stops the balancer.
func (b *Balancer) Close() {
	if b.srv != nil {
		_ = b.srv.Close()
	}
}
