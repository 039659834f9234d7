//! `elasticsearch` sink: `_bulk` into date-named indices, per-item status handling.
//!
//! Built on reqwest rather than the `elasticsearch` crate: the crate is alpha-only, its
//! default TLS pulls OpenSSL, and `_bulk` is one NDJSON POST whose per-item statuses we
//! need anyway. Plain `application/x-ndjson` / `application/json` (never the vendor
//! `compatible-with` media types) is what both Elasticsearch and OpenSearch accept.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use perisco_engine::component::*;
use perisco_engine::event::{DataType, Event};
use perisco_engine::metrics::Counter;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, HeaderValue};
use serde::Deserialize;
use tracing::{error, info, warn};

use crate::util::config::{BatchConfig, BatchSettings, BufferConfig, DeliverySettings, RetryConfig};
use crate::util::driver::{self, Deliver, Item, Outcome, Router};
use crate::util::http::{
    AUTH_HEADER, Auth, TlsConfig, build_client, check_url, error_chain, gzip, status_outcome, transport_outcome,
};
use crate::util::metrics::SinkCounters;
use crate::util::retry::status_is_transient;
use crate::util::template::{Civil, Template, check_date_pattern, index_safe, strftime_utc};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    #[default]
    None,
    Gzip,
}

/// `index_template = { name = "perisco", file = "template.json" }`: installed (PUT
/// `_index_template/<name>`) before the first bulk request. Without `file`, a built-in
/// template maps `ts` as `date_nanos` and `ip.client` / `ip.server` as `ip`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexTemplateConfig {
    #[serde(default = "default_template_name")]
    pub name: String,
    pub file: Option<std::path::PathBuf>,
}

fn default_template_name() -> String {
    "perisco".into()
}

/// How each document's `_id` is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DocumentId {
    /// The server assigns one: a bulk retried after a lost answer can index a duplicate.
    #[default]
    Auto,
    /// A 128-bit hash of the document's JSON: a retried item overwrites itself, so retries
    /// never duplicate (byte-identical records collapse into one document).
    ContentHash,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElasticsearchConfig {
    /// Base URLs; a transient failure moves on to the next one.
    pub endpoints: Vec<String>,
    /// strftime (`%Y %m %d %H`, UTC, from the record's `ts`) and `{{ field.path }}` templates.
    #[serde(default = "default_index")]
    pub index: String,
    /// Text used for a `{{ field }}` that the record lacks.
    #[serde(default = "default_missing")]
    pub missing_field_value: String,
    pub auth: Option<Auth>,
    pub tls: Option<TlsConfig>,
    #[serde(default)]
    pub compression: Compression,
    pub index_template: Option<IndexTemplateConfig>,
    #[serde(default)]
    pub document_id: DocumentId,
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    #[serde(default = "default_batch")]
    pub batch: BatchConfig,
    #[serde(default)]
    pub buffer: BufferConfig,
    #[serde(default)]
    pub retry: RetryConfig,
}

fn default_index() -> String {
    "perisco-%Y.%m.%d".into()
}
fn default_missing() -> String {
    "unknown".into()
}
fn default_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_batch() -> BatchConfig {
    BatchConfig {
        max_events: None,
        max_bytes: None,
        timeout: None,
    }
}

const BATCH_DEFAULTS: BatchSettings = BatchSettings {
    max_events: 1000,
    max_bytes: 5 << 20,
    timeout: Duration::from_secs(1),
};

impl ComponentConfig for ElasticsearchConfig {
    fn type_name(&self) -> &'static str {
        "elasticsearch"
    }

    fn validate(&self) -> Vec<ValueError> {
        let mut errors = Vec::new();
        if self.endpoints.is_empty() {
            errors.push(ValueError::at("endpoints", "needs at least one URL"));
        }
        for (i, e) in self.endpoints.iter().enumerate() {
            check_url(&format!("endpoints.{i}"), e, &mut errors);
        }
        if let Err(e) = Template::parse(&self.index) {
            errors.push(ValueError::at("index", e.to_string()));
        }
        if let Err(e) = check_date_pattern(&self.index) {
            errors.push(ValueError::at("index", e));
        }
        if self.index.is_empty() || self.index.starts_with(['_', '-', '+']) {
            errors.push(ValueError::at(
                "index",
                "must not be empty or start with `_`, `-` or `+`",
            ));
        }
        if self.timeout.is_zero() {
            errors.push(ValueError::at("timeout", "must be more than 0"));
        }
        self.batch.validate(&mut errors);
        self.buffer.validate(&mut errors);
        self.retry.validate(&mut errors);
        errors
    }
}

impl ElasticsearchConfig {
    fn headers(&self) -> Result<HeaderMap, BoxError> {
        let mut h = HeaderMap::new();
        if let Some(a) = &self.auth {
            h.insert(AUTH_HEADER, a.header()?);
        }
        Ok(h)
    }

    fn template_body(&self, cx: &BuildContext) -> Result<Option<(String, Bytes)>, BoxError> {
        let Some(t) = &self.index_template else { return Ok(None) };
        let body = match &t.file {
            Some(f) => {
                let path = cx.resolve_path(f);
                let text =
                    std::fs::read(&path).map_err(|e| format!("index_template.file `{}`: {e}", path.display()))?;
                serde_json::from_slice::<serde_json::Value>(&text)
                    .map_err(|e| format!("index_template.file `{}`: not JSON: {e}", path.display()))?;
                Bytes::from(text)
            }
            None => {
                // The index pattern's fixed prefix, e.g. "perisco-" for "perisco-%Y.%m.%d".
                let prefix: String = self.index.split(['%', '{']).next().unwrap_or_default().to_string();
                let body = serde_json::json!({
                    "index_patterns": [format!("{prefix}*")],
                    "priority": 100,
                    "template": {"mappings": {"properties": {
                        "ts": {"type": "date_nanos"},
                        "ip": {"properties": {"client": {"type": "ip"}, "server": {"type": "ip"}}},
                    }}}
                });
                Bytes::from(body.to_string())
            }
        };
        Ok(Some((t.name.clone(), body)))
    }
}

impl SinkConfig for ElasticsearchConfig {
    fn accepts(&self, _input: DataType) -> bool {
        true
    }

    fn build(&self, cx: &BuildContext) -> Result<Box<dyn Sink>, BoxError> {
        let client = build_client(cx, self.tls.as_ref(), self.timeout)?;
        let template = Template::parse(&self.index)?;
        let missing = cx.registry.counter(
            "perisco_sink_template_missing_field_total",
            "Events whose index/topic template named a field they lack (the fallback text was used).",
            &[("component_id", &cx.id)],
        );
        let router = IndexRouter {
            pattern: self.index.clone(),
            template,
            missing_value: self.missing_field_value.clone(),
            missing,
            last: None,
        };
        let bulk = Bulk {
            client,
            endpoints: self
                .endpoints
                .iter()
                .map(|e| e.trim_end_matches('/').to_string())
                .collect(),
            current: 0,
            headers: self.headers()?,
            gzip: self.compression == Compression::Gzip,
            template: self.template_body(cx)?,
            content_ids: self.document_id == DocumentId::ContentHash,
        };
        let settings = DeliverySettings {
            batch: self.batch.settings(BATCH_DEFAULTS),
            buffer: self.buffer,
            retry: self.retry,
        };
        Ok(Box::new(EsSink {
            router,
            bulk,
            settings,
            counters: SinkCounters::register(cx),
        }))
    }

    fn healthcheck(&self) -> Option<BoxFuture<Result<(), BoxError>>> {
        let endpoint = self.endpoints.first()?.trim_end_matches('/').to_string();
        let headers = self.headers().ok()?;
        let tls = self.tls.clone().map(|mut t| {
            // No config directory here: a relative CA path is checked by `build`.
            if t.ca_file.as_ref().is_some_and(|p| p.is_relative()) {
                t.ca_file = None;
            }
            t
        });
        Some(Box::pin(async move {
            let cx = BuildContext {
                id: "healthcheck".into(),
                kind: Kind::Sink,
                metrics: Default::default(),
                registry: perisco_engine::metrics::Registry::new(),
                health: perisco_engine::health::HealthRegistry::new().handle("healthcheck".into()),
                config_dir: None,
            };
            let client = build_client(&cx, tls.as_ref(), Duration::from_secs(5))?;
            let resp = client
                .get(format!("{endpoint}/"))
                .headers(headers)
                .send()
                .await
                .map_err(|e| format!("GET {endpoint}/: {}", error_chain(&e.without_url())))?;
            let status = resp.status();
            if !status.is_success() {
                return Err(format!("GET {endpoint}/ answered {status}").into());
            }
            let body = resp.bytes().await.unwrap_or_default();
            let info: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let version = &info["version"];
            info!(
                endpoint = %endpoint,
                distribution = version["distribution"].as_str().unwrap_or("elasticsearch"),
                version = version["number"].as_str().unwrap_or("?"),
                "elasticsearch sink: cluster reachable"
            );
            Ok(())
        }))
    }
}

struct EsSink {
    router: IndexRouter,
    bulk: Bulk,
    settings: DeliverySettings,
    counters: SinkCounters,
}

impl Sink for EsSink {
    fn run(self: Box<Self>, cx: SinkContext) -> BoxFuture<Result<(), BoxError>> {
        Box::pin(driver::run(cx, self.settings, self.counters, self.router, self.bulk))
    }
}

/// Index name per event: template fields first, then the date from the record's `ts`.
struct IndexRouter {
    pattern: String,
    template: Template,
    missing_value: String,
    missing: Counter,
    /// The last (date, index) when the pattern has no fields: most events share it.
    last: Option<(Civil, Arc<str>)>,
}

fn event_time(event: &Event) -> Civil {
    match event {
        Event::Record(r) => Civil::from_unix_ns(r.ts),
        // A remap that changed `ts` wrote it into the patch: route by the written value.
        Event::Patched(p) if p.patch.get("ts").is_none() => Civil::from_unix_ns(p.record.ts),
        Event::Patched(p) => p
            .to_json_map()
            .ok()
            .and_then(|m| {
                m.get("ts")
                    .and_then(|v| v.as_str())
                    .and_then(Civil::from_rfc3339_prefix)
            })
            .unwrap_or_else(|| Civil::from_unix_ns(perisco_engine::record::now_ns())),
        Event::Document(d) => d
            .get("ts")
            .and_then(|v| v.as_str())
            .and_then(Civil::from_rfc3339_prefix)
            .unwrap_or_else(|| Civil::from_unix_ns(perisco_engine::record::now_ns())),
        _ => Civil::from_unix_ns(perisco_engine::record::now_ns()),
    }
}

impl Router for IndexRouter {
    fn route(&mut self, event: &Event, item: &mut Item) -> Result<(), String> {
        let t = event_time(event);
        if self.template.is_static() {
            if let Some((c, idx)) = &self.last
                && *c == t
            {
                item.route = Some(idx.clone());
                return Ok(());
            }
            let idx: Arc<str> = index_safe(&strftime_utc(&self.pattern, t)).into();
            self.last = Some((t, idx.clone()));
            item.route = Some(idx);
            return Ok(());
        }
        let doc = event.to_json_value().map_err(|e| e.to_string())?;
        let (name, missing) = self
            .template
            .render(Some(&doc), &self.missing_value, |s| index_safe(s).replace('%', "_"));
        if missing {
            self.missing.inc();
        }
        item.route = Some(index_safe(&strftime_utc(&name, t)).into());
        Ok(())
    }
}

struct Bulk {
    client: reqwest::Client,
    endpoints: Vec<String>,
    current: usize,
    headers: HeaderMap,
    gzip: bool,
    /// (name, body) still to install; `None` once installed or not wanted.
    template: Option<(String, Bytes)>,
    content_ids: bool,
}

#[derive(Deserialize)]
struct BulkResponse {
    errors: bool,
    #[serde(default)]
    items: Vec<std::collections::HashMap<String, BulkItem>>,
}

#[derive(Deserialize)]
struct BulkItem {
    status: u16,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

/// 32 hex digits from two differently seeded SipHash runs over the document.
fn content_id(line: &[u8]) -> String {
    use std::hash::{Hash, Hasher};
    let mut a = std::hash::DefaultHasher::new();
    line.hash(&mut a);
    let mut b = std::hash::DefaultHasher::new();
    0x5eed_u16.hash(&mut b);
    line.hash(&mut b);
    format!("{:016x}{:016x}", a.finish(), b.finish())
}

/// The `_bulk` body: an `index` action line then the document, per event.
fn bulk_body(batch: &[Item], content_ids: bool) -> Vec<u8> {
    let total: usize = batch.iter().map(|i| i.line.len() + 90).sum();
    let mut body = Vec::with_capacity(total);
    for i in batch {
        body.extend_from_slice(b"{\"index\":{\"_index\":");
        let name = i.route.as_deref().unwrap_or("perisco");
        // An index name is a JSON string; serde escapes whatever the template produced.
        let _ = serde_json::to_writer(&mut body, name);
        if content_ids {
            body.extend_from_slice(b",\"_id\":\"");
            body.extend_from_slice(content_id(&i.line).as_bytes());
            body.push(b'"');
        }
        body.extend_from_slice(b"}}\n");
        body.extend_from_slice(&i.line);
        body.push(b'\n');
    }
    body
}

/// Per-item results of a bulk response with `errors: true`.
fn split_items(batch: &[Item], resp: BulkResponse) -> Outcome {
    if resp.items.len() != batch.len() {
        return Outcome::Permanent(format!(
            "bulk response lists {} items for {} sent; not retried to avoid duplicates",
            resp.items.len(),
            batch.len()
        ));
    }
    let mut retry = Vec::new();
    let mut rejected = 0;
    let mut first_transient = None;
    let mut first_rejected = None;
    for (item, result) in batch.iter().zip(resp.items) {
        let Some(r) = result.into_values().next() else { continue };
        if (200..300).contains(&r.status) {
            continue;
        }
        let why = || {
            format!(
                "{}: {}",
                r.status,
                r.error.as_ref().map(|e| e.to_string()).unwrap_or_default()
            )
        };
        if status_is_transient(r.status) {
            first_transient.get_or_insert_with(why);
            retry.push(item.clone());
        } else {
            first_rejected.get_or_insert_with(why);
            rejected += 1;
        }
    }
    let reason = match (first_rejected, first_transient) {
        (Some(r), _) => format!("bulk item refused, e.g. {r}"),
        (None, Some(t)) => format!("bulk items to retry, e.g. {t}"),
        (None, None) => "bulk reported errors but every item succeeded".into(),
    };
    Outcome::Partial {
        retry,
        rejected,
        reason,
    }
}

impl Bulk {
    fn endpoint(&self) -> &str {
        &self.endpoints[self.current % self.endpoints.len()]
    }

    fn rotate(&mut self) {
        self.current = (self.current + 1) % self.endpoints.len();
    }

    /// PUT the index template; `Some(outcome)` when the bulk should wait (transient).
    async fn install_template(&mut self) -> Option<Outcome> {
        let (name, body) = self.template.as_ref()?;
        let url = format!("{}/_index_template/{name}", self.endpoint());
        let req = self
            .client
            .put(&url)
            .headers(self.headers.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(body.clone());
        match req.send().await {
            Ok(r) if r.status().is_success() => {
                info!(template = %name, "index template installed");
                self.template = None;
                None
            }
            Ok(r) if status_is_transient(r.status().as_u16()) => {
                self.rotate();
                Some(Outcome::Transient(format!(
                    "installing index template: HTTP {}",
                    r.status()
                )))
            }
            Ok(r) => {
                let status = r.status();
                let text = r.text().await.unwrap_or_default();
                error!(template = %name, %status, body = %text.chars().take(300).collect::<String>(), "index template refused; indexing without it");
                self.template = None;
                None
            }
            Err(e) => {
                self.rotate();
                Some(Outcome::Transient(format!(
                    "installing index template: {}",
                    error_chain(&e.without_url())
                )))
            }
        }
    }
}

impl Deliver for Bulk {
    async fn deliver(&mut self, batch: &[Item]) -> Outcome {
        if let Some(wait) = self.install_template().await {
            return wait;
        }
        let body = bulk_body(batch, self.content_ids);
        let mut req = self
            .client
            .post(format!("{}/_bulk", self.endpoint()))
            .headers(self.headers.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"));
        req = if self.gzip {
            req.header(CONTENT_ENCODING, "gzip").body(gzip(&body))
        } else {
            req.body(body)
        };
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                self.rotate();
                return transport_outcome(e);
            }
        };
        let status = resp.status();
        let text = match resp.bytes().await {
            Ok(t) => t,
            Err(e) => {
                self.rotate();
                return transport_outcome(e);
            }
        };
        if !status.is_success() {
            let o = status_outcome(status, &text);
            if matches!(o, Outcome::Transient(_)) {
                self.rotate();
            }
            return o;
        }
        match serde_json::from_slice::<BulkResponse>(&text) {
            Ok(r) if !r.errors => Outcome::Delivered,
            Ok(r) => split_items(batch, r),
            Err(e) => {
                warn!(error = %e, "bulk answered 2xx with an unreadable body; counting the batch as delivered");
                Outcome::Delivered
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(line: &str, index: &str) -> Item {
        Item {
            line: Bytes::copy_from_slice(line.as_bytes()),
            route: Some(index.into()),
            key: None,
        }
    }

    #[test]
    fn bulk_body_pairs_action_and_doc() {
        let b = bulk_body(&[item(r#"{"a":1}"#, "perisco-2023.04.11")], false);
        assert_eq!(b, b"{\"index\":{\"_index\":\"perisco-2023.04.11\"}}\n{\"a\":1}\n");
        let b = String::from_utf8(bulk_body(&[item(r#"{"a":1}"#, "i")], true)).unwrap();
        let action: serde_json::Value = serde_json::from_str(b.lines().next().unwrap()).unwrap();
        assert_eq!(action["index"]["_id"].as_str().unwrap().len(), 32);
        assert_eq!(content_id(b"{}"), content_id(b"{}"));
        assert_ne!(content_id(b"{\"a\":1}"), content_id(b"{\"a\":2}"));
    }

    #[test]
    fn items_split_by_status() {
        let batch = [item("{}", "i"), item("{}", "i"), item("{}", "i")];
        let resp: BulkResponse = serde_json::from_str(
            r#"{"errors":true,"items":[{"index":{"status":201}},{"index":{"status":429,"error":{"type":"es_rejected_execution_exception"}}},{"index":{"status":400,"error":{"type":"mapper_parsing_exception"}}}]}"#,
        )
        .unwrap();
        match split_items(&batch, resp) {
            Outcome::Partial {
                retry,
                rejected,
                reason,
            } => {
                assert_eq!((retry.len(), rejected), (1, 1));
                assert!(reason.contains("mapper_parsing_exception"), "{reason}");
            }
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn validation() {
        let cfg: ElasticsearchConfig = toml::from_str(
            r#"
            endpoints = ["localhost:9200"]
            index = "perisco-%j"
            "#,
        )
        .unwrap();
        let errs = cfg.validate();
        let keys: Vec<_> = errs.iter().filter_map(|e| e.key.as_deref()).collect();
        assert_eq!(keys, ["endpoints.0", "index"], "{errs:?}");
    }
}
