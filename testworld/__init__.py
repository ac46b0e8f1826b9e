"""The test world: real servers (kube-apiserver and etcd, Prometheus, Envoy) started by the
tests and benchmarks on loopback ports. See section 9 of the design and README.md,
"Development: the test world"."""
