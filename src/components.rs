//! The closed list of component types: the one place that names them all.
//!
//! Each kind is a serde enum; the variant (snake_case) is the TOML `type`, the module and
//! the config struct: `type = "file"` ↔ `SinkKind::File(FileConfig)`. The engine reads
//! `type` itself and deserialises the enum externally tagged, which keeps positions for
//! errors (do not add `#[serde(tag = "type")]`).
//! To add a component: add a variant here and one arm to each `match` below.

use perisco_engine::component::*;
use perisco_engine::event::DataType;
use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    Pcap(perisco_pcap::PcapConfig),
    EbpfSocket(perisco_probes::EbpfSocketConfig),
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransformKind {
    Parse(perisco_l7::ParseConfig),
    Match(perisco_l7::MatchConfig),
    Filter(perisco_vrl::FilterConfig),
    Remap(perisco_vrl::RemapConfig),
    Enrich(perisco_enrich::EnrichConfig),
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SinkKind {
    File(perisco_sinks::file::FileConfig),
    Kafka(Box<perisco_sinks::kafka::KafkaConfig>),
    Elasticsearch(Box<perisco_sinks::elasticsearch::ElasticsearchConfig>),
    Http(Box<perisco_sinks::http::HttpConfig>),
    Hubble(perisco_observe::HubbleConfig),
    PrometheusExporter(perisco_observe::PrometheusExporterConfig),
    // sinks: kafka, elasticsearch, http, hubble, prometheus_exporter
}

pub struct Perisco;

impl Components for Perisco {
    type Source = SourceKind;
    type Transform = TransformKind;
    type Sink = SinkKind;
}

impl ComponentConfig for SourceKind {
    fn type_name(&self) -> &'static str {
        match self {
            SourceKind::Pcap(c) => c.type_name(),
            SourceKind::EbpfSocket(c) => c.type_name(),
        }
    }
    fn validate(&self) -> Vec<ValueError> {
        match self {
            SourceKind::Pcap(c) => c.validate(),
            SourceKind::EbpfSocket(c) => c.validate(),
        }
    }
}

impl SourceConfig for SourceKind {
    fn output(&self) -> DataType {
        match self {
            SourceKind::Pcap(c) => c.output(),
            SourceKind::EbpfSocket(c) => c.output(),
        }
    }
    fn build(&self, cx: &BuildContext) -> Result<Box<dyn Source>, BoxError> {
        match self {
            SourceKind::Pcap(c) => c.build(cx),
            SourceKind::EbpfSocket(c) => c.build(cx),
        }
    }
    fn can_reconfigure(&self, new: &Self) -> bool {
        match (self, new) {
            (SourceKind::Pcap(a), SourceKind::Pcap(b)) => a.can_reconfigure(b),
            (SourceKind::EbpfSocket(a), SourceKind::EbpfSocket(b)) => a.can_reconfigure(b),
            _ => false,
        }
    }
    fn update_payload(&self) -> std::sync::Arc<dyn std::any::Any + Send + Sync> {
        // The source downcasts to its own config type.
        match self {
            SourceKind::Pcap(c) => c.update_payload(),
            SourceKind::EbpfSocket(c) => c.update_payload(),
        }
    }
}

impl ComponentConfig for TransformKind {
    fn type_name(&self) -> &'static str {
        match self {
            TransformKind::Parse(c) => c.type_name(),
            TransformKind::Match(c) => c.type_name(),
            TransformKind::Filter(c) => c.type_name(),
            TransformKind::Remap(c) => c.type_name(),
            TransformKind::Enrich(c) => c.type_name(),
        }
    }
    fn validate(&self) -> Vec<ValueError> {
        match self {
            TransformKind::Parse(c) => c.validate(),
            TransformKind::Match(c) => c.validate(),
            TransformKind::Filter(c) => c.validate(),
            TransformKind::Remap(c) => c.validate(),
            TransformKind::Enrich(c) => c.validate(),
        }
    }
}

impl TransformConfig for TransformKind {
    fn accepts(&self, input: DataType) -> bool {
        match self {
            TransformKind::Parse(c) => c.accepts(input),
            TransformKind::Match(c) => c.accepts(input),
            TransformKind::Filter(c) => c.accepts(input),
            TransformKind::Remap(c) => c.accepts(input),
            TransformKind::Enrich(c) => c.accepts(input),
        }
    }
    fn output(&self) -> DataType {
        match self {
            TransformKind::Parse(c) => c.output(),
            TransformKind::Match(c) => c.output(),
            TransformKind::Filter(c) => c.output(),
            TransformKind::Remap(c) => c.output(),
            TransformKind::Enrich(c) => c.output(),
        }
    }
    fn build(&self, cx: &BuildContext) -> Result<Box<dyn FunctionTransform>, BoxError> {
        match self {
            TransformKind::Parse(c) => c.build(cx),
            TransformKind::Match(c) => c.build(cx),
            TransformKind::Filter(c) => c.build(cx),
            TransformKind::Remap(c) => c.build(cx),
            TransformKind::Enrich(c) => c.build(cx),
        }
    }
}

impl ComponentConfig for SinkKind {
    fn type_name(&self) -> &'static str {
        match self {
            SinkKind::File(c) => c.type_name(),
            SinkKind::Kafka(c) => c.type_name(),
            SinkKind::Elasticsearch(c) => c.type_name(),
            SinkKind::Http(c) => c.type_name(),
            SinkKind::Hubble(c) => c.type_name(),
            SinkKind::PrometheusExporter(c) => c.type_name(),
        }
    }
    fn validate(&self) -> Vec<ValueError> {
        match self {
            SinkKind::File(c) => c.validate(),
            SinkKind::Kafka(c) => c.validate(),
            SinkKind::Elasticsearch(c) => c.validate(),
            SinkKind::Http(c) => c.validate(),
            SinkKind::Hubble(c) => c.validate(),
            SinkKind::PrometheusExporter(c) => c.validate(),
        }
    }
}

impl SinkConfig for SinkKind {
    fn accepts(&self, input: DataType) -> bool {
        match self {
            SinkKind::File(c) => c.accepts(input),
            SinkKind::Kafka(c) => c.accepts(input),
            SinkKind::Elasticsearch(c) => c.accepts(input),
            SinkKind::Http(c) => c.accepts(input),
            SinkKind::Hubble(c) => c.accepts(input),
            SinkKind::PrometheusExporter(c) => c.accepts(input),
        }
    }
    fn build(&self, cx: &BuildContext) -> Result<Box<dyn Sink>, BoxError> {
        match self {
            SinkKind::File(c) => c.build(cx),
            SinkKind::Kafka(c) => c.build(cx),
            SinkKind::Elasticsearch(c) => c.build(cx),
            SinkKind::Http(c) => c.build(cx),
            SinkKind::Hubble(c) => c.build(cx),
            SinkKind::PrometheusExporter(c) => c.build(cx),
        }
    }
    fn healthcheck(&self) -> Option<BoxFuture<Result<(), BoxError>>> {
        match self {
            SinkKind::File(c) => c.healthcheck(),
            SinkKind::Kafka(c) => c.healthcheck(),
            SinkKind::Elasticsearch(c) => c.healthcheck(),
            SinkKind::Http(c) => c.healthcheck(),
            SinkKind::Hubble(c) => c.healthcheck(),
            SinkKind::PrometheusExporter(c) => c.healthcheck(),
        }
    }
}
