//! `kafka` sink (rdkafka): one message per event, counted delivered on its delivery report.
//!
//! librdkafka retries sends internally until `message.timeout.ms`; when that expires
//! during an outage, the report says so and the driver produces the event again after a
//! backoff (counted as retried), so nothing expires silently.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use perisco_engine::component::*;
use perisco_engine::event::{DataType, Event};
use perisco_engine::metrics::Counter;
use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use serde::Deserialize;

use crate::util::config::{BatchConfig, BatchSettings, BufferConfig, DeliverySettings, RetryConfig};
use crate::util::driver::{self, Deliver, Item, Outcome, Router};
use crate::util::metrics::SinkCounters;
use crate::util::template::{Template, kafka_topic_safe, lookup, scalar_text};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    #[default]
    None,
    Gzip,
    Snappy,
    Lz4,
}

impl Compression {
    fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// "host:port,host:port".
    pub bootstrap_servers: String,
    /// Topic name, may contain `{{ field.path }}` (e.g. "perisco-{{ server.namespace }}").
    pub topic: String,
    /// Text used for a `{{ field }}` that the record lacks (counted).
    #[serde(default = "default_missing")]
    pub missing_field_value: String,
    /// Dotted path of the field used as message key; absent/null → no key.
    pub key_field: Option<String>,
    #[serde(default)]
    pub compression: Compression,
    /// "all" (default), "1" or "0".
    #[serde(default = "default_acks")]
    pub acks: String,
    /// Any librdkafka property, applied last (e.g. "linger.ms", "security.protocol").
    #[serde(default)]
    pub librdkafka_options: BTreeMap<String, String>,
    #[serde(default = "default_batch")]
    pub batch: BatchConfig,
    #[serde(default)]
    pub buffer: BufferConfig,
    #[serde(default)]
    pub retry: RetryConfig,
}

fn default_missing() -> String {
    "unknown".into()
}
fn default_acks() -> String {
    "all".into()
}
fn default_batch() -> BatchConfig {
    BatchConfig {
        max_events: None,
        max_bytes: None,
        timeout: None,
    }
}

const BATCH_DEFAULTS: BatchSettings = BatchSettings {
    max_events: 5000,
    max_bytes: 8 << 20,
    timeout: Duration::from_millis(50),
};

impl ComponentConfig for KafkaConfig {
    fn type_name(&self) -> &'static str {
        "kafka"
    }

    fn validate(&self) -> Vec<ValueError> {
        let mut errors = Vec::new();
        if self.bootstrap_servers.trim().is_empty() {
            errors.push(ValueError::at("bootstrap_servers", "must not be empty"));
        }
        match Template::parse(&self.topic) {
            Err(e) => errors.push(ValueError::at("topic", e.to_string())),
            Ok(t) if t.is_static() && (self.topic.is_empty() || kafka_topic_safe(&self.topic) != self.topic) => {
                errors.push(ValueError::at(
                    "topic",
                    "a topic name is 1+ characters of [A-Za-z0-9._-]",
                ));
            }
            Ok(_) => {}
        }
        if kafka_topic_safe(&self.missing_field_value) != self.missing_field_value {
            errors.push(ValueError::at(
                "missing_field_value",
                "must be characters of [A-Za-z0-9._-]",
            ));
        }
        if self
            .key_field
            .as_deref()
            .is_some_and(|k| k.is_empty() || k.split('.').any(str::is_empty))
        {
            errors.push(ValueError::at(
                "key_field",
                "must be a dotted field path like `server.podName`",
            ));
        }
        if !matches!(self.acks.as_str(), "all" | "-1" | "0" | "1") {
            errors.push(ValueError::at("acks", "must be \"all\", \"1\" or \"0\""));
        }
        self.batch.validate(&mut errors);
        self.buffer.validate(&mut errors);
        self.retry.validate(&mut errors);
        errors
    }
}

impl KafkaConfig {
    fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap_servers)
            .set("compression.type", self.compression.as_str())
            .set("acks", &self.acks)
            // Idempotence would need acks=all and brokers that support it; retries of our
            // own may duplicate an event whose report was lost, never lose one.
            .set("enable.idempotence", "false")
            // Reports come back within this time, delivered or not; an expired event is
            // produced again by the driver (see the module comment).
            .set("message.timeout.ms", "30000")
            .set("linger.ms", "5");
        for (k, v) in &self.librdkafka_options {
            c.set(k, v);
        }
        c
    }
}

impl SinkConfig for KafkaConfig {
    fn accepts(&self, _input: DataType) -> bool {
        true
    }

    fn build(&self, cx: &BuildContext) -> Result<Box<dyn Sink>, BoxError> {
        let producer: FutureProducer = self
            .client_config()
            .create()
            .map_err(|e| format!("cannot create the Kafka producer: {e}"))?;
        let router = TopicRouter {
            template: Template::parse(&self.topic)?,
            static_topic: Template::parse(&self.topic)?
                .is_static()
                .then(|| Arc::from(self.topic.as_str())),
            missing_value: self.missing_field_value.clone(),
            key_path: self
                .key_field
                .as_ref()
                .map(|k| k.split('.').map(str::to_string).collect()),
            missing: cx.registry.counter(
                "perisco_sink_template_missing_field_total",
                "Events whose index/topic template named a field they lack (the fallback text was used).",
                &[("component_id", &cx.id)],
            ),
        };
        let settings = DeliverySettings {
            batch: self.batch.settings(BATCH_DEFAULTS),
            buffer: self.buffer,
            retry: self.retry,
        };
        Ok(Box::new(KafkaSink {
            producer,
            router,
            settings,
            counters: SinkCounters::register(cx),
        }))
    }

    fn healthcheck(&self) -> Option<BoxFuture<Result<(), BoxError>>> {
        let config = self.client_config();
        let topic = Template::parse(&self.topic)
            .ok()?
            .is_static()
            .then(|| self.topic.clone());
        Some(Box::pin(async move {
            tokio::task::spawn_blocking(move || -> Result<(), BoxError> {
                let p: rdkafka::producer::BaseProducer = config.create()?;
                let md = p
                    .client()
                    .fetch_metadata(topic.as_deref(), Duration::from_secs(5))
                    .map_err(|e| format!("cannot fetch metadata from the brokers: {e}"))?;
                if let Some(t) = &topic {
                    let ok = md
                        .topics()
                        .iter()
                        .any(|m| m.name() == t && m.error().is_none() && !m.partitions().is_empty());
                    if !ok {
                        return Err(
                            format!("topic `{t}` does not exist (create it; brokers may not auto-create)").into(),
                        );
                    }
                }
                Ok(())
            })
            .await?
        }))
    }
}

struct KafkaSink {
    producer: FutureProducer,
    router: TopicRouter,
    settings: DeliverySettings,
    counters: SinkCounters,
}

impl Sink for KafkaSink {
    fn run(self: Box<Self>, cx: SinkContext) -> BoxFuture<Result<(), BoxError>> {
        Box::pin(driver::run(
            cx,
            self.settings,
            self.counters,
            self.router,
            Producing {
                producer: self.producer,
            },
        ))
    }
}

struct TopicRouter {
    template: Template,
    static_topic: Option<Arc<str>>,
    missing_value: String,
    key_path: Option<Vec<String>>,
    missing: Counter,
}

impl Router for TopicRouter {
    fn route(&mut self, event: &Event, item: &mut Item) -> Result<(), String> {
        let doc = if self.static_topic.is_none() || self.key_path.is_some() {
            Some(event.to_json_value().map_err(|e| e.to_string())?)
        } else {
            None
        };
        item.route = Some(match &self.static_topic {
            Some(t) => t.clone(),
            None => {
                let (topic, missing) = self
                    .template
                    .render(doc.as_ref(), &self.missing_value, kafka_topic_safe);
                if missing {
                    self.missing.inc();
                }
                topic.into()
            }
        });
        if let (Some(path), Some(doc)) = (&self.key_path, &doc) {
            item.key = lookup(doc, path).and_then(scalar_text).map(Bytes::from);
        }
        Ok(())
    }
}

struct Producing {
    producer: FutureProducer,
}

/// Errors that producing again cannot fix.
fn is_permanent(e: &KafkaError) -> bool {
    use RDKafkaErrorCode::*;
    let code = match e {
        KafkaError::MessageProduction(c) => *c,
        _ => return false,
    };
    matches!(
        code,
        MessageSizeTooLarge
            | InvalidMessageSize
            | InvalidMessage
            | InvalidRecord
            | UnknownTopic
            | UnknownTopicOrPartition
            | InvalidTopic
            | TopicAuthorizationFailed
            | ClusterAuthorizationFailed
            | InvalidRequiredAcks
            | UnsupportedForMessageFormat
    )
}

impl Deliver for Producing {
    async fn deliver(&mut self, batch: &[Item]) -> Outcome {
        let mut pending = Vec::with_capacity(batch.len());
        let mut retry = Vec::new();
        let mut rejected = 0;
        let mut first_error: Option<String> = None;
        for (i, item) in batch.iter().enumerate() {
            let topic = item.route.as_deref().unwrap_or_default();
            let mut rec: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).payload(&item.line[..]);
            if let Some(k) = &item.key {
                rec = rec.key(&k[..]);
            }
            match self.producer.send_result(rec) {
                Ok(f) => pending.push((i, f)),
                Err((e, _)) => {
                    first_error.get_or_insert_with(|| format!("enqueue: {e}"));
                    if is_permanent(&e) {
                        rejected += 1
                    } else {
                        retry.push(item.clone())
                    }
                }
            }
        }
        for (i, f) in pending {
            match f.await {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => {
                    first_error
                        .get_or_insert_with(|| format!("topic `{}`: {e}", batch[i].route.as_deref().unwrap_or("")));
                    if is_permanent(&e) {
                        rejected += 1
                    } else {
                        retry.push(batch[i].clone())
                    }
                }
                Err(_) => {
                    first_error.get_or_insert_with(|| "producer gone before the report".into());
                    retry.push(batch[i].clone());
                }
            }
        }
        match first_error {
            None => Outcome::Delivered,
            Some(reason) => Outcome::Partial {
                retry,
                rejected,
                reason,
            },
        }
    }
}

impl Drop for Producing {
    fn drop(&mut self) {
        // Whatever is still queued was already counted (delivered, retried or dropped).
        let _ = self.producer.flush(Duration::from_secs(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        let cfg: KafkaConfig = toml::from_str(
            r#"
            bootstrap_servers = "127.0.0.1:9092"
            topic = "bad topic"
            acks = "most"
            key_field = "a..b"
            "#,
        )
        .unwrap();
        let keys: Vec<_> = cfg.validate().into_iter().filter_map(|e| e.key).collect();
        assert_eq!(keys, ["topic", "key_field", "acks"]);
    }

    #[test]
    fn options_override_defaults() {
        let cfg: KafkaConfig = toml::from_str(
            r#"
            bootstrap_servers = "b:9092"
            topic = "perisco-{{ server.namespace }}"
            compression = "lz4"
            librdkafka_options = { "message.timeout.ms" = "5000" }
            "#,
        )
        .unwrap();
        assert!(cfg.validate().is_empty());
        let c = cfg.client_config();
        assert_eq!(c.get("message.timeout.ms"), Some("5000"));
        assert_eq!(c.get("compression.type"), Some("lz4"));
    }
}
