//! hubble (observer API) and prometheus_exporter sinks
