//! perisco's engine: the event model, component traits, config loading and validation,
//! the running topology (bounded channels of batches, reload, drain) and the api.
//!
//! It knows no concrete component: the binary supplies the closed list through
//! [`component::Components`].

pub mod api;
pub mod component;
pub mod config;
pub mod event;
pub mod health;
pub mod json;
pub mod metrics;
pub mod patch;
pub mod record;
pub mod testing;
pub mod topology;

pub use component::{
    BoxError, BuildContext, ComponentConfig, Components, FunctionTransform, Kind, Sink, SinkConfig, SinkContext,
    Source, SourceConfig, SourceContext, SourceOutput, TransformConfig, ValueError,
};
pub use config::{Config, ConfigError, ConfigErrors};
pub use event::{DataType, Event};
pub use record::now_ns;
pub use topology::{BatchReceiver, RunningTopology, ShutdownSignal};

/// The map for lookups on the data path (flows, connections, pods by IP): foldhash instead
/// of SipHash, which was several per cent of a pipeline's instructions. Seeded per process,
/// so keys from the network or the API server cannot be crafted to collide.
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
