//! `http` sink: batches of JSON lines POSTed (or PUT) to a URI, as NDJSON or a JSON array.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use perisco_engine::component::*;
use perisco_engine::event::DataType;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;

use crate::util::config::{BatchConfig, BatchSettings, BufferConfig, DeliverySettings, RetryConfig};
use crate::util::driver::{self, Deliver, Item, NoRoute, Outcome};
use crate::util::http::{
    AUTH_HEADER, Auth, TlsConfig, build_client, check_url, gzip, status_outcome, transport_outcome,
};
use crate::util::metrics::SinkCounters;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    #[default]
    Post,
    Put,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// One JSON object per line (`application/x-ndjson`).
    #[default]
    Ndjson,
    /// `[obj,obj,...]` (`application/json`).
    JsonArray,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    #[default]
    None,
    Gzip,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    pub uri: String,
    #[serde(default)]
    pub method: Method,
    /// Extra request headers. Put secrets in `auth`, which is never logged.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub encoding: Encoding,
    #[serde(default)]
    pub compression: Compression,
    pub auth: Option<Auth>,
    pub tls: Option<TlsConfig>,
    /// Whole-request timeout; a timeout is retried.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    #[serde(default = "default_batch")]
    pub batch: BatchConfig,
    #[serde(default)]
    pub buffer: BufferConfig,
    #[serde(default)]
    pub retry: RetryConfig,
}

fn default_timeout() -> Duration {
    Duration::from_secs(30)
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
    max_bytes: 1 << 20,
    timeout: Duration::from_secs(1),
};

impl ComponentConfig for HttpConfig {
    fn type_name(&self) -> &'static str {
        "http"
    }

    fn validate(&self) -> Vec<ValueError> {
        let mut errors = Vec::new();
        check_url("uri", &self.uri, &mut errors);
        for (k, v) in &self.headers {
            if HeaderName::from_bytes(k.as_bytes()).is_err() {
                errors.push(ValueError::at(format!("headers.{k}"), "not a valid header name"));
            }
            if HeaderValue::from_str(v).is_err() {
                errors.push(ValueError::at(format!("headers.{k}"), "not a valid header value"));
            }
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

impl SinkConfig for HttpConfig {
    fn accepts(&self, _input: DataType) -> bool {
        true
    }

    fn build(&self, cx: &BuildContext) -> Result<Box<dyn Sink>, BoxError> {
        let client = build_client(cx, self.tls.as_ref(), self.timeout)?;
        let mut headers = HeaderMap::new();
        for (k, v) in &self.headers {
            headers.insert(HeaderName::from_bytes(k.as_bytes())?, HeaderValue::from_str(v)?);
        }
        let content_type = match self.encoding {
            Encoding::Ndjson => "application/x-ndjson",
            Encoding::JsonArray => "application/json",
        };
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        if self.compression == Compression::Gzip {
            headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        if let Some(a) = &self.auth {
            headers.insert(AUTH_HEADER, a.header()?);
        }
        let method = match self.method {
            Method::Post => reqwest::Method::POST,
            Method::Put => reqwest::Method::PUT,
        };
        let poster = Poster {
            client,
            uri: self.uri.clone(),
            method,
            headers,
            encoding: self.encoding,
            gzip: self.compression == Compression::Gzip,
        };
        let settings = DeliverySettings {
            batch: self.batch.settings(BATCH_DEFAULTS),
            buffer: self.buffer,
            retry: self.retry,
        };
        Ok(Box::new(HttpSink {
            poster,
            settings,
            counters: SinkCounters::register(cx),
        }))
    }

    fn healthcheck(&self) -> Option<BoxFuture<Result<(), BoxError>>> {
        // A TCP connect only: a test request could have side effects at the receiver.
        let url = reqwest::Url::parse(&self.uri).ok()?;
        Some(Box::pin(async move {
            let host = url.host_str().ok_or("uri has no host")?.to_string();
            let port = url.port_or_known_default().ok_or("uri has no port")?;
            let conn = tokio::net::TcpStream::connect((host.as_str(), port));
            match tokio::time::timeout(Duration::from_secs(5), conn).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(format!("cannot connect to {host}:{port}: {e}").into()),
                Err(_) => Err(format!("connecting to {host}:{port} timed out after 5s").into()),
            }
        }))
    }
}

struct HttpSink {
    poster: Poster,
    settings: DeliverySettings,
    counters: SinkCounters,
}

impl Sink for HttpSink {
    fn run(self: Box<Self>, cx: SinkContext) -> BoxFuture<Result<(), BoxError>> {
        Box::pin(driver::run(cx, self.settings, self.counters, NoRoute, self.poster))
    }
}

struct Poster {
    client: reqwest::Client,
    uri: String,
    method: reqwest::Method,
    headers: HeaderMap,
    encoding: Encoding,
    gzip: bool,
}

/// The request body for a batch.
fn encode_body(batch: &[Item], encoding: Encoding) -> Vec<u8> {
    let total: usize = batch.iter().map(|i| i.line.len() + 1).sum();
    let mut body = Vec::with_capacity(total + 2);
    match encoding {
        Encoding::Ndjson => {
            for i in batch {
                body.extend_from_slice(&i.line);
                body.push(b'\n');
            }
        }
        Encoding::JsonArray => {
            body.push(b'[');
            for (n, i) in batch.iter().enumerate() {
                if n > 0 {
                    body.push(b',');
                }
                body.extend_from_slice(&i.line);
            }
            body.push(b']');
        }
    }
    body
}

impl Deliver for Poster {
    async fn deliver(&mut self, batch: &[Item]) -> Outcome {
        let body = encode_body(batch, self.encoding);
        let body = if self.gzip { gzip(&body) } else { body };
        let req = self
            .client
            .request(self.method.clone(), &self.uri)
            .headers(self.headers.clone())
            .body(Bytes::from(body));
        match req.send().await {
            Ok(resp) if resp.status().is_success() => {
                // Read the body so the connection can be reused.
                let _ = resp.bytes().await;
                Outcome::Delivered
            }
            Ok(resp) => {
                let status = resp.status();
                let body = resp.bytes().await.unwrap_or_default();
                status_outcome(status, &body)
            }
            Err(e) => transport_outcome(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(s: &str) -> Item {
        Item {
            line: Bytes::copy_from_slice(s.as_bytes()),
            route: None,
            key: None,
        }
    }

    #[test]
    fn bodies() {
        let b = [item(r#"{"a":1}"#), item(r#"{"b":2}"#)];
        assert_eq!(encode_body(&b, Encoding::Ndjson), b"{\"a\":1}\n{\"b\":2}\n");
        assert_eq!(encode_body(&b, Encoding::JsonArray), b"[{\"a\":1},{\"b\":2}]");
    }

    #[test]
    fn validation_names_keys() {
        let cfg: HttpConfig = toml::from_str(
            r#"
            uri = "ftp://x"
            headers = { "bad header" = "v" }
            batch = { max_events = 0 }
            "#,
        )
        .unwrap();
        let keys: Vec<_> = cfg.validate().into_iter().filter_map(|e| e.key).collect();
        assert_eq!(keys, ["uri", "headers.bad header", "batch.max_events"]);
    }
}
