// Package envoy holds no code: its tests validate the Envoy, Istio and
// Kubernetes YAML in this directory (envoy.yaml, two-routes.yaml, istio/,
// k8s/). The checker they use is envoy/envoycheck.
package envoy
