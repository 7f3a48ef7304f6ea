package delivery

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics of the queue manager; nil when Config.Metrics is nil.
type metrics struct {
	results *prometheus.CounterVec // status: delivered, deferred, failed
	dsns    *prometheus.CounterVec // action: failed, delayed
	delay   prometheus.Histogram   // arrival to final delivery of a recipient
}

func newMetrics(reg prometheus.Registerer, q *Manager) (*metrics, error) {
	if reg == nil {
		return nil, nil
	}
	m := &metrics{
		results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portcullis_delivery_results_total",
			Help: "Delivery attempt results per recipient.",
		}, []string{"status"}),
		dsns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portcullis_delivery_dsn_total",
			Help: "Delivery status notifications queued (failed: bounces, delayed: warnings).",
		}, []string{"action"}),
		delay: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "portcullis_delivery_delay_seconds",
			Help:    "Time from arrival to successful delivery of a recipient.",
			Buckets: []float64{0.01, 0.05, 0.25, 1, 5, 30, 120, 600, 3600, 6 * 3600, 24 * 3600, 5 * 24 * 3600},
		}),
	}
	queued := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "portcullis_delivery_queue_messages",
		Help: "Messages known to the queue manager (active, deferred and held).",
	}, func() float64 {
		q.mu.Lock()
		defer q.mu.Unlock()
		return float64(len(q.msgs))
	})
	inflow := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "portcullis_delivery_inflow_busy",
		Help: "1 while mail arrives faster than delivery.inflow_rate, so that new deliveries wait up to delivery.inflow_delay.",
	}, func() float64 {
		q.mu.Lock()
		defer q.mu.Unlock()
		if q.busyInflow(q.now()) {
			return 1
		}
		return 0
	})
	for _, c := range []prometheus.Collector{m.results, m.dsns, m.delay, queued, inflow} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) result(status string, delay time.Duration) {
	if m == nil {
		return
	}
	m.results.WithLabelValues(status).Inc()
	if status == "delivered" {
		m.delay.Observe(delay.Seconds())
	}
}

func (m *metrics) dsn(action string) {
	if m != nil {
		m.dsns.WithLabelValues(action).Inc()
	}
}
