package smtpd

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the server's Prometheus collectors; nil when Deps.Registerer is nil.
type metrics struct {
	conns    *prometheus.CounterVec   // listener, result
	active   *prometheus.GaugeVec     // listener
	replies  *prometheus.CounterVec   // listener, stage, class
	messages *prometheus.CounterVec   // listener, outcome
	latency  *prometheus.HistogramVec // stage
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	if reg == nil {
		return nil, nil
	}
	m := &metrics{
		conns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "portcullis", Subsystem: "smtpd", Name: "connections_total",
			Help: "Connections by listener and result (accepted, limit, rejected, error).",
		}, []string{"listener", "result"}),
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "portcullis", Subsystem: "smtpd", Name: "connections_active",
			Help: "Open connections by listener.",
		}, []string{"listener"}),
		replies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "portcullis", Subsystem: "smtpd", Name: "replies_total",
			Help: "Replies decided by smtpd (policy, relay control, limits, queue) by stage and code class.",
		}, []string{"listener", "stage", "class"}),
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "portcullis", Subsystem: "smtpd", Name: "messages_total",
			Help: "Messages at the end of DATA by outcome (queued, quarantined, discarded, rejected, tempfailed).",
		}, []string{"listener", "outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "portcullis", Subsystem: "smtpd", Name: "stage_duration_seconds",
			Help:    "Time spent deciding each stage (policy evaluation, and the queue write at data).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}, []string{"stage"}),
	}
	for _, c := range []prometheus.Collector{m.conns, m.active, m.replies, m.messages, m.latency} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) conn(listener, result string) {
	if m != nil {
		m.conns.WithLabelValues(listener, result).Inc()
	}
}

func (m *metrics) activeAdd(listener string, d float64) {
	if m != nil {
		m.active.WithLabelValues(listener).Add(d)
	}
}

func (m *metrics) reply(listener, stage string, code int) {
	if m != nil {
		m.replies.WithLabelValues(listener, stage, strconv.Itoa(code/100)+"xx").Inc()
	}
}

func (m *metrics) message(listener, outcome string) {
	if m != nil {
		m.messages.WithLabelValues(listener, outcome).Inc()
	}
}

func (m *metrics) observe(stage string, seconds float64) {
	if m != nil {
		m.latency.WithLabelValues(stage).Observe(seconds)
	}
}
