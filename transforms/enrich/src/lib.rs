//! enrich transform: Kubernetes metadata
