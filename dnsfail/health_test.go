package dnsfail

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// Issue 20: a check probed a URL only, so a check of each target address
// could not reach the service as its clients do (by name, with SNI) and
// could not send headers or another method. With host, method, headers
// and body, an HTTPS check of the target's address reaches a virtual host
// that answers only for its name; two checks of one URL with different
// options are two checks.
func TestHTTPCheckOfATargetAddressWithTheServiceName(t *testing.T) {
	var (
		mu   sync.Mutex
		seen []string
	)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sni := ""
		if r.TLS != nil {
			sni = r.TLS.ServerName
		}
		mu.Lock()
		seen = append(seen, fmt.Sprintf("%s %s sni=%s x=%s", r.Method, r.Host, sni, r.Header.Get("X-Check")))
		mu.Unlock()
		if r.Host != "www.example.test" || sni != "www.example.test" {
			http.Error(w, "misdirected", http.StatusMisdirectedRequest)
			return
		}
		if r.Method != http.MethodPost || r.Header.Get("X-Check") != "geobooth" {
			http.Error(w, "want POST with X-Check", http.StatusBadRequest)
			return
		}
		fmt.Fprint(w, "ready")
	}))
	ln, err := net.Listen("tcp", "127.0.0.11:0")
	if err != nil {
		t.Fatal(err)
	}
	srv.Listener = ln
	srv.TLS = &tls.Config{}
	srv.StartTLS()
	defer srv.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	check := fmt.Sprintf("https://{target}:%d/health", port)
	f := &FailoverConfig{Sites: map[string]SiteTargets{"east": {Targets: []string{"127.0.0.11"}, Check: check}}}
	plain := DefaultHealthCheck()
	plain.Timeout, plain.Status = 1e9, "200-299"
	service := plain
	service.Match, service.Host, service.Method, service.Headers = "ready", "www.example.test", "POST", map[string]string{"X-Check": "geobooth"}
	if errs := service.checkHTTP(f); len(errs) != 0 {
		t.Fatal(errs)
	}
	h := newHealth("east", nil, newMetrics(nilRegistry(), &Server{}), nil)
	ks, kp := checkKey(service, check, "127.0.0.11"), checkKey(plain, check, "127.0.0.11")
	if ks == kp || !strings.HasPrefix(ks, fmt.Sprintf("https://127.0.0.11:%d/health (Host www.example.test, POST, request ", port)) || strings.Contains(ks, "geobooth") {
		t.Fatalf("keys %q and %q: want two checks, the header's value not shown", ks, kp)
	}
	for _, c := range []struct {
		key string
		hc  HealthCheck
		ok  bool
	}{{ks, service, true}, {kp, plain, false}} {
		if err := h.add(c.key, c.hc); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := h.local[c.key].probe.probe(ctx)
		cancel()
		if (err == nil) != c.ok {
			t.Errorf("%s: %v, want ok=%v", c.key, err, c.ok)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{"POST www.example.test sni=www.example.test x=geobooth", fmt.Sprintf("GET 127.0.0.11:%d sni= x=", port)}
	if strings.Join(seen, "\n") != strings.Join(want, "\n") {
		t.Fatalf("the service saw:\n%s\nwant:\n%s", strings.Join(seen, "\n"), strings.Join(want, "\n"))
	}
}

// The HTTP options are refused where they cannot apply, and when wrong.
func TestHTTPCheckOptionsAreValidated(t *testing.T) {
	for _, c := range []struct {
		check string
		hc    HealthCheck
		want  string
	}{
		{"tcp://{target}:443", HealthCheck{Host: "www.example.test"}, "apply to http and https checks"},
		{"https://{target}/", HealthCheck{Host: "www example"}, "want a host name"},
		{"https://{target}/", HealthCheck{Method: "DELETE"}, "want GET, HEAD"},
		{"https://{target}/", HealthCheck{Headers: map[string]string{"Host": "x"}}, "other than Host"},
		{"https://{target}/", HealthCheck{Headers: map[string]string{"Bad Name": "x"}}, "want a header name"},
	} {
		f := &FailoverConfig{Sites: map[string]SiteTargets{"east": {Targets: []string{"192.0.2.1"}, Check: c.check}}}
		if errs := c.hc.checkHTTP(f); !strings.Contains(fmt.Sprint(errs), c.want) {
			t.Errorf("%s %+v: %v, want %q", c.check, c.hc, errs, c.want)
		}
	}
}
