package checkpointer

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/kubectl-selfhost/kubectl-selfhost/plugin/checkpoint"
)

// Metrics are the checkpointer's Prometheus series, on their own registry.
type Metrics struct {
	Registry    *prometheus.Registry
	checkpoints *prometheus.GaugeVec
	transitions *prometheus.CounterVec
	errors      *prometheus.CounterVec
	apiUp       prometheus.Gauge
	lastSuccess prometheus.Gauge
	// credentialsRefused is 1 while the API server answers 401 or 403.
	credentialsRefused prometheus.Gauge
}

// Error kinds counted by pod_checkpointer_errors_total.
const (
	errCRI        = "cri"
	errAPI        = "api"
	errDisk       = "disk"
	errCheckpoint = "checkpoint"
	errStatus     = "status"
)

// NewMetrics registers the series, with every label value present from the start.
func NewMetrics() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		checkpoints: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pod_checkpointer_checkpoints", Help: "Checkpoints on this node by state.",
		}, []string{"state"}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pod_checkpointer_transitions_total", Help: "State transitions of checkpoints.",
		}, []string{"from", "to"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pod_checkpointer_errors_total", Help: "Errors by source: cri, api, disk, checkpoint, status.",
		}, []string{"kind"}),
		apiUp: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pod_checkpointer_api_up", Help: "1 when the last reconcile reached the API server.",
		}),
		credentialsRefused: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pod_checkpointer_api_credentials_refused", Help: "1 when the API server refused this checkpointer's token or permissions (401 or 403) on the last reconcile.",
		}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pod_checkpointer_last_reconcile_timestamp_seconds", Help: "Unix time of the last complete reconcile.",
		}),
	}
	for _, p := range []checkpoint.Phase{checkpoint.PhaseNone, checkpoint.PhaseInactive, checkpoint.PhaseActive} {
		m.checkpoints.WithLabelValues(string(p))
	}
	for _, k := range []string{errCRI, errAPI, errDisk, errCheckpoint, errStatus} {
		m.errors.WithLabelValues(k)
	}
	m.Registry.MustRegister(m.checkpoints, m.transitions, m.errors, m.apiUp, m.credentialsRefused, m.lastSuccess,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}
