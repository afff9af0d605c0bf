// Package metrics holds crishim's Prometheus metrics. It knows nothing of
// gRPC or containerd: the server and the domain packages report into it
// through plain functions, so none of them depends on Prometheus.
package metrics

import (
	"context"
	"net/http"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/sirupsen/logrus"
)

const namespace = "crishim"

// Stop outcomes: did the container exit on its stop signal within the
// grace period, or did it take a SIGKILL?
const (
	StopGraceful = "graceful"
	StopKilled   = "killed"
)

// Metrics is one crishim's set of metrics in a registry of its own (not
// the global one, so that tests can build as many as they like).
type Metrics struct {
	reg *prometheus.Registry

	rpcDuration  *prometheus.HistogramVec
	rpcTotal     *prometheus.CounterVec
	cniDuration  *prometheus.HistogramVec
	pullBytes    prometheus.Counter
	pullDuration *prometheus.HistogramVec
	stops        *prometheus.CounterVec
	containerd   *prometheus.CounterVec
	// Log entries dropped because they could not be written, summed over
	// all containers: a label per container would grow without bound.
	logDroppedBytes prometheus.Counter
	logDroppedLines prometheus.Counter
}

// New registers crishim's metrics plus the Go runtime and process ones.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		rpcDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: "grpc", Name: "request_duration_seconds",
			Help: "Latency of CRI RPCs (for streams: their whole life).",
			// RPCs range from microseconds (Version) to minutes (image pulls, stops with long grace periods).
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300},
		}, []string{"rpc"}),
		rpcTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "grpc", Name: "requests_total",
			Help: "CRI RPCs handled, by gRPC status code (OK included).",
		}, []string{"rpc", "code"}),
		cniDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: "cni", Name: "operation_duration_seconds",
			Help:    "Latency of CNI ADD (setup) and DEL (teardown) for pod networks.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"operation", "result"}),
		pullBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "image", Name: "pull_bytes_total",
			Help: "Bytes of image content fetched from registries (content already present is not counted).",
		}),
		pullDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: "image", Name: "pull_duration_seconds",
			Help:    "Time to pull and unpack an image.",
			Buckets: []float64{.1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600},
		}, []string{"result"}),
		stops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "container", Name: "stops_total",
			Help: "Container stops by outcome: graceful (exited within the grace period) or killed (SIGKILL at the deadline).",
		}, []string{"outcome"}),
		containerd: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "containerd", Name: "requests_total",
			Help: "Unary requests crishim sent to containerd, by method and gRPC status code: the round trips behind each CRI call.",
		}, []string{"method", "code"}),
		logDroppedBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "container", Name: "log_dropped_bytes_total",
			Help: "Bytes of CRI log entries that could not be written to container log files (a full or failing disk) and were dropped; crishim's log names the containers.",
		}),
		logDroppedLines: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "container", Name: "log_dropped_lines_total",
			Help: "CRI log entries that could not be written to container log files and were dropped.",
		}),
	}
	// Both outcomes exist from the start, so a rate over them is defined
	// before the first kill.
	m.stops.WithLabelValues(StopGraceful)
	m.stops.WithLabelValues(StopKilled)
	m.reg.MustRegister(m.rpcDuration, m.rpcTotal, m.cniDuration, m.pullBytes, m.pullDuration, m.stops, m.containerd,
		m.logDroppedBytes, m.logDroppedLines,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: namespace, Name: "gomaxprocs",
			Help: "The Go runtime's GOMAXPROCS now: lowered while crishim is idle (idle-gomaxprocs), the default while it works.",
		}, func() float64 { return float64(runtime.GOMAXPROCS(0)) }),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Registry is where the metrics live (for tests and extra collectors).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the metrics in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog:      logAdapter{},
		ErrorHandling: promhttp.ContinueOnError,
	})
}

// ObserveRPC records one finished RPC and its gRPC status code name.
func (m *Metrics) ObserveRPC(rpc, code string, took time.Duration) {
	m.rpcDuration.WithLabelValues(rpc).Observe(took.Seconds())
	m.rpcTotal.WithLabelValues(rpc, code).Inc()
}

// ObserveCNI records one CNI operation ("setup" or "teardown").
func (m *Metrics) ObserveCNI(op string, took time.Duration, err error) {
	m.cniDuration.WithLabelValues(op, result(err)).Observe(took.Seconds())
}

// ObservePull records one image pull and the bytes it fetched.
func (m *Metrics) ObservePull(bytes int64, took time.Duration, err error) {
	if bytes > 0 {
		m.pullBytes.Add(float64(bytes))
	}
	m.pullDuration.WithLabelValues(result(err)).Observe(took.Seconds())
}

// ObserveStop records how a container stop ended.
func (m *Metrics) ObserveStop(killed bool) {
	if killed {
		m.stops.WithLabelValues(StopKilled).Inc()
	} else {
		m.stops.WithLabelValues(StopGraceful).Inc()
	}
}

// ObserveLogDrop records one container log entry of the given size that
// could not be written.
func (m *Metrics) ObserveLogDrop(bytes int) {
	m.logDroppedBytes.Add(float64(bytes))
	m.logDroppedLines.Inc()
}

// CountUnknownSandboxes adds crishim_sandbox_unknown, computed by count
// on every scrape, like the pods by state, so that it never drifts from
// the sandbox manager's store.
func (m *Metrics) CountUnknownSandboxes(count func() int) error {
	return m.reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: namespace, Subsystem: "sandbox", Name: "unknown",
		Help: "Pod sandboxes whose recovery after a restart is not complete: listed NOTREADY and re-checked until it is; crishim's log and the pod's verbose status say why.",
	}, func() float64 { return float64(count()) }))
}

func result(err error) string {
	if err != nil {
		return "error"
	}
	return "ok"
}

// CountFunc counts objects by state at scrape time.
type CountFunc func(ctx context.Context) (map[string]int, error)

// RegisterStateGauge adds crishim_<name>{state} gauges computed by count
// on every scrape. Every state in states is reported, 0 when absent, so
// that a state emptying out drops to zero instead of vanishing.
func (m *Metrics) RegisterStateGauge(name, help string, states []string, count CountFunc) error {
	return m.reg.Register(&stateCollector{
		desc:   prometheus.NewDesc(prometheus.BuildFQName(namespace, "", name), help, []string{"state"}, nil),
		states: states,
		count:  count,
	})
}

// scrapeTimeout bounds the List calls behind a state gauge.
const scrapeTimeout = 5 * time.Second

type stateCollector struct {
	desc   *prometheus.Desc
	states []string
	count  CountFunc
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	counts, err := c.count(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.desc, err)
		return
	}
	seen := map[string]bool{}
	for _, s := range c.states {
		seen[s] = true
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(counts[s]), s)
	}
	for s, n := range counts {
		if !seen[s] {
			ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n), s)
		}
	}
}

// logAdapter sends promhttp's errors to crishim's log.
type logAdapter struct{}

func (logAdapter) Println(v ...any) { logrus.WithField("component", "metrics").Warn(v...) }

// ObserveContainerd records one unary request to containerd ("service/Method").
func (m *Metrics) ObserveContainerd(method, code string) {
	m.containerd.WithLabelValues(method, code).Inc()
}
