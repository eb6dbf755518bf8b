package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// newMetrics returns a MeterProvider for the token cache and the handler of
// /metrics, which serves what it measured in Prometheus text format through
// OpenTelemetry's Prometheus exporter. Each replica has a registry of its
// own (tests run several in one process).
func newMetrics() (*sdkmetric.MeterProvider, http.Handler, error) {
	reg := prometheus.NewRegistry()
	exp, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return nil, nil, fmt.Errorf("metrics: %w", err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp))
	return mp, promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), nil
}

// readiness is the body of /readyz.
type readiness struct {
	Status        string `json:"status"` // "ready", "degraded" (the store is down) or "closed"
	Store         string `json:"store"`  // "up" or "down"
	StoreKind     string `json:"store_kind"`
	DownSince     string `json:"down_since,omitempty"` // RFC 3339, while the store is down
	PendingWrites int    `json:"pending_writes"`
	Pages         bool   `json:"pages"`    // signed-in users' pages are served
	SignIns       bool   `json:"sign_ins"` // sign-ins are accepted
}

// handleHealthz answers 200 while the process serves HTTP: liveness, not
// the store's state (restarting a replica does not bring Redis back).
func (s *server) handleHealthz(w http.ResponseWriter, r *http.Request) {
	io.WriteString(w, "ok\n")
}

// handleReadyz tells what the replica can serve now, from the token
// cache's Health (no store call). While the store is down it answers 200
// with status "degraded": the replicas share the store, so a 503 would take
// every replica out of the load balancer at once, although each still
// serves its signed-in users' pages from memory; sign-ins are refused then
// (they need the store), and the body says so. It answers 503 only once the
// replica is closing.
func (s *server) handleReadyz(w http.ResponseWriter, r *http.Request) {
	h := s.tokens.cache.Health()
	body := readiness{Status: "ready", Store: "up", StoreKind: s.tokens.kind,
		PendingWrites: h.Pending, Pages: true, SignIns: true}
	code := http.StatusOK
	switch {
	case h.Closed:
		body.Status, body.Pages, body.SignIns = "closed", false, false
		code = http.StatusServiceUnavailable
	case !h.StoreUp:
		body.Status, body.Store, body.SignIns = "degraded", "down", false
		body.DownSince = h.DownSince.UTC().Format(time.RFC3339Nano)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(body)
}
