//! sinks: file, http, elasticsearch, kafka, with shared batching, retry and buffering
