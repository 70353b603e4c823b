package httpapi

import (
	"context"
	"log/slog"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	cp "github.com/envplane/envplane/controlplane"
)

// metrics are the server's Prometheus collectors.
type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "envplane_http_requests_total",
			Help: "HTTP requests by method, route and status.",
		}, []string{"method", "route", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "envplane_http_request_duration_seconds",
			Help:    "HTTP request latency by method and route.",
			Buckets: prometheus.DefBuckets,
		}, []string{"method", "route"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) observe(method, route string, status int, d time.Duration) {
	m.requests.WithLabelValues(method, route, strconv.Itoa(status)).Inc()
	m.duration.WithLabelValues(method, route).Observe(d.Seconds())
}

// OperationMetrics counts finished operations and their durations by kind
// and outcome, and gauges each target's health; it is the service's
// Observer.
type OperationMetrics struct {
	finished *prometheus.CounterVec
	duration *prometheus.HistogramVec
	targetUp *prometheus.GaugeVec
}

var _ cp.Observer = (*OperationMetrics)(nil)

// NewOperationMetrics registers the operation collectors with reg. It fails
// if they are registered already.
func NewOperationMetrics(reg prometheus.Registerer) (*OperationMetrics, error) {
	m := &OperationMetrics{
		finished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "envplane_operations_finished_total",
			Help: "Operations (provision, clone, deprovision, rotate) that ended, by kind and status.",
		}, []string{"kind", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "envplane_operation_duration_seconds",
			Help:    "Time from an operation's request to its end, by kind and status.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}, []string{"kind", "status"}),
		targetUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "envplane_target_up",
			Help: "1 when the target answered this replica's last probe or call, 0 when it was unavailable; absent until first probed.",
		}, []string{"target"}),
	}
	for _, c := range []prometheus.Collector{m.finished, m.duration, m.targetUp} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// OperationFinished records one finished operation.
func (m *OperationMetrics) OperationFinished(kind cp.OperationKind, status cp.OperationStatus, elapsed time.Duration) {
	m.finished.WithLabelValues(string(kind), string(status)).Inc()
	m.duration.WithLabelValues(string(kind), string(status)).Observe(elapsed.Seconds())
}

// TargetChecked sets the target's gauge: 1 up, 0 down.
func (m *OperationMetrics) TargetChecked(target string, up bool) {
	v := 0.0
	if up {
		v = 1
	}
	m.targetUp.WithLabelValues(target).Set(v)
}

// usageCollector reports storage usage per organization, read from the
// registry at each scrape (the background measurement keeps it current):
// one series per organization, never one per environment, so a platform of
// 100,000 environments stays a platform of as many series as organizations.
type usageCollector struct {
	svc       *cp.Service
	logger    *slog.Logger
	bytes     *prometheus.Desc
	overLimit *prometheus.Desc
}

// usageScrapeTimeout bounds the registry query of one scrape.
const usageScrapeTimeout = 5 * time.Second

func newUsageCollector(svc *cp.Service, logger *slog.Logger) *usageCollector {
	return &usageCollector{
		svc:    svc,
		logger: logger,
		bytes: prometheus.NewDesc("envplane_org_storage_bytes",
			"Bytes the organization's live environments held at their last usage measurement.", []string{"org"}, nil),
		overLimit: prometheus.NewDesc("envplane_environments_over_limit",
			"The organization's live environments measured over their storage limit.", []string{"org"}, nil),
	}
}

// Describe sends the two descriptors.
func (c *usageCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.bytes
	ch <- c.overLimit
}

// Collect reads the sums per organization; when the store does not answer,
// it logs and reports nothing rather than stale values.
func (c *usageCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), usageScrapeTimeout)
	defer cancel()
	totals, err := c.svc.UsageByOrganization(ctx)
	if err != nil {
		c.logger.Error("cannot read usage for metrics", "err", err)
		return
	}
	for _, t := range totals {
		ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.GaugeValue, float64(t.SizeBytes), t.OrgSlug)
		ch <- prometheus.MustNewConstMetric(c.overLimit, prometheus.GaugeValue, float64(t.OverLimit), t.OrgSlug)
	}
}
