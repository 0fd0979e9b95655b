// Package observability holds no code: its tests check that the Grafana
// dashboard and the Prometheus alert rules in this directory use only
// metrics that exist: the control plane's, read from its /metrics, and the
// filter's, read from the stats the module defines and named as Envoy
// exports them to Prometheus.
package observability
