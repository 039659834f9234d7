//! The closed list of component types: the one place that names them all.
//!
//! Each kind is a serde enum tagged by `type`; the variant (snake_case) is the TOML
//! `type`, the module and the config struct: `type = "file"` ↔ `Sink::File(FileConfig)`.
//! To add a component: add a variant here and one arm to each `match` below.

use perisco_engine::component::*;
use perisco_engine::event::DataType;
use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SourceKind {
    // sources: ebpf_socket, pcap
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TransformKind {
    // transforms: parse, match, enrich, filter, remap
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SinkKind {
    File(perisco_sinks::file::FileConfig),
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
        match *self {}
    }
    fn validate(&self) -> Vec<ValueError> {
        match *self {}
    }
}

impl SourceConfig for SourceKind {
    fn output(&self) -> DataType {
        match *self {}
    }
    fn build(&self, _cx: &BuildContext) -> Result<Box<dyn Source>, BoxError> {
        match *self {}
    }
    fn can_reconfigure(&self, _new: &Self) -> bool {
        match *self {}
    }
}

impl ComponentConfig for TransformKind {
    fn type_name(&self) -> &'static str {
        match *self {}
    }
    fn validate(&self) -> Vec<ValueError> {
        match *self {}
    }
}

impl TransformConfig for TransformKind {
    fn accepts(&self, _input: DataType) -> bool {
        match *self {}
    }
    fn output(&self) -> DataType {
        match *self {}
    }
    fn build(&self, _cx: &BuildContext) -> Result<Box<dyn FunctionTransform>, BoxError> {
        match *self {}
    }
}

impl ComponentConfig for SinkKind {
    fn type_name(&self) -> &'static str {
        match self {
            SinkKind::File(c) => c.type_name(),
        }
    }
    fn validate(&self) -> Vec<ValueError> {
        match self {
            SinkKind::File(c) => c.validate(),
        }
    }
}

impl SinkConfig for SinkKind {
    fn accepts(&self, input: DataType) -> bool {
        match self {
            SinkKind::File(c) => c.accepts(input),
        }
    }
    fn build(&self, cx: &BuildContext) -> Result<Box<dyn Sink>, BoxError> {
        match self {
            SinkKind::File(c) => c.build(cx),
        }
    }
    fn healthcheck(&self) -> Option<BoxFuture<Result<(), BoxError>>> {
        match self {
            SinkKind::File(c) => c.healthcheck(),
        }
    }
}
