//! What the http and elasticsearch sinks share: auth, TLS, the reqwest client, gzip, and
//! turning a response or a transport error into an [`Outcome`].

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use perisco_engine::component::{BoxError, BuildContext, ValueError};
use reqwest::header::{AUTHORIZATION, HeaderValue};
use serde::Deserialize;

use super::driver::Outcome;
use super::retry::status_is_transient;

/// `auth = { strategy = "basic", user = "...", password = "..." }`,
/// `{ strategy = "bearer", token = "..." }` or `{ strategy = "api_key", key = "..." }`
/// (Elasticsearch: the base64 `id:api_key`). Secrets never reach logs: `Debug` hides them.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(tag = "strategy", rename_all = "snake_case", deny_unknown_fields)]
pub enum Auth {
    Basic { user: String, password: String },
    Bearer { token: String },
    ApiKey { key: String },
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::Basic { user, .. } => write!(f, "Basic {{ user: {user:?}, password: [REDACTED] }}"),
            Auth::Bearer { .. } => f.write_str("Bearer { token: [REDACTED] }"),
            Auth::ApiKey { .. } => f.write_str("ApiKey { key: [REDACTED] }"),
        }
    }
}

impl Auth {
    /// The `Authorization` header value, marked sensitive so it is never printed.
    pub fn header(&self) -> Result<HeaderValue, BoxError> {
        let text = match self {
            Auth::Basic { user, password } => format!("Basic {}", base64(format!("{user}:{password}").as_bytes())),
            Auth::Bearer { token } => format!("Bearer {token}"),
            Auth::ApiKey { key } => format!("ApiKey {key}"),
        };
        let mut v =
            HeaderValue::from_str(&text).map_err(|_| "auth: credentials contain characters not allowed in a header")?;
        v.set_sensitive(true);
        Ok(v)
    }
}

/// `tls = { ca_file = "ca.pem", insecure_skip_verify = false }`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Extra PEM CA certificates trusted besides the system roots.
    pub ca_file: Option<PathBuf>,
    /// Accept any server certificate. For tests only: it defeats TLS.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// A reqwest client with rustls (ring), HTTP/1.1, the request timeout, and the TLS options.
pub fn build_client(
    cx: &BuildContext,
    tls: Option<&TlsConfig>,
    timeout: Duration,
) -> Result<reqwest::Client, BoxError> {
    // The process-wide rustls provider; another component may have installed it already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut b = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)));
    if let Some(tls) = tls {
        if let Some(ca) = &tls.ca_file {
            let path = cx.resolve_path(ca);
            let pem = std::fs::read(&path).map_err(|e| format!("tls.ca_file `{}`: {e}", path.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("tls.ca_file `{}`: not PEM certificates: {e}", path.display()))?;
            b = b.tls_certs_merge(certs);
        }
        if tls.insecure_skip_verify {
            tracing::warn!(component = %cx.id, "tls.insecure_skip_verify = true: server certificates are not checked");
            b = b.tls_danger_accept_invalid_certs(true);
        }
    }
    Ok(b.build()?)
}

/// Check a URL from the config (scheme http/https, has a host).
pub fn check_url(key: &str, url: &str, errors: &mut Vec<ValueError>) {
    match reqwest::Url::parse(url) {
        Ok(u) if u.password().is_some() => errors.push(ValueError::at(
            key,
            "credentials in the URL would end up in logs: use `auth`",
        )),
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
        Ok(u) => errors.push(ValueError::at(
            key,
            format!("`{}` is not an http(s) URL with a host", u.scheme()),
        )),
        Err(e) => errors.push(ValueError::at(key, format!("invalid URL: {e}"))),
    }
}

/// gzip at a fast level: the point is fewer bytes on the wire, not the best ratio.
pub fn gzip(body: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::with_capacity(body.len() / 4), flate2::Compression::fast());
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(body);
    enc.finish().unwrap_or_default()
}

/// A transport error: everything but a request we could not even build is transient.
/// The URL is left out of the message (it may carry a token in its query).
pub fn transport_outcome(e: reqwest::Error) -> Outcome {
    let e = e.without_url();
    if e.is_builder() {
        Outcome::Permanent(format!("cannot build the request: {}", error_chain(&e)))
    } else {
        Outcome::Transient(format!("request failed: {}", error_chain(&e)))
    }
}

/// A non-2xx status: transient for 408/429/5xx, permanent otherwise. The body's start
/// is kept for the log (servers explain 400s there).
pub fn status_outcome(status: reqwest::StatusCode, body: &[u8]) -> Outcome {
    let snippet = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
    let reason = format!("HTTP {status}: {snippet}");
    if status_is_transient(status.as_u16()) {
        Outcome::Transient(reason)
    } else {
        Outcome::Permanent(reason)
    }
}

/// "error sending request: connection refused", not just the outer layer.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        let t = inner.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = inner.source();
    }
    s
}

/// Standard base64 with padding (for basic auth; no dependency for 20 lines).
pub fn base64(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Header name for auth (re-exported so sinks do not import reqwest for one constant).
pub const AUTH_HEADER: reqwest::header::HeaderName = AUTHORIZATION;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }

    #[test]
    fn auth_debug_hides_secrets() {
        let a = Auth::Basic {
            user: "elastic".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{a:?}").contains("hunter2"));
        assert!(!format!("{:?}", Auth::Bearer { token: "tok123".into() }).contains("tok123"));
        assert_eq!(a.header().unwrap().to_str().unwrap(), "Basic ZWxhc3RpYzpodW50ZXIy");
        assert!(a.header().unwrap().is_sensitive());
    }

    #[test]
    fn urls_with_passwords_are_refused() {
        let mut errors = Vec::new();
        check_url("uri", "https://user:secret@collector/", &mut errors);
        assert_eq!(errors.len(), 1);
        assert!(!errors[0].message.contains("secret"));
        check_url("uri", "https://collector:8443/ingest", &mut errors);
        assert_eq!(errors.len(), 1);
    }

    #[test]
    fn classifies_http_results() {
        assert!(matches!(
            status_outcome(reqwest::StatusCode::SERVICE_UNAVAILABLE, b""),
            Outcome::Transient(_)
        ));
        assert!(matches!(
            status_outcome(reqwest::StatusCode::TOO_MANY_REQUESTS, b""),
            Outcome::Transient(_)
        ));
        assert!(
            matches!(status_outcome(reqwest::StatusCode::BAD_REQUEST, b"bad"), Outcome::Permanent(r) if r.contains("bad"))
        );
    }
}
