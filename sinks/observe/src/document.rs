//! Records reshaped by `remap` arrive as JSON documents. Both sinks read them back as
//! typed records: strictly when the shape is intact, else field by field (best effort),
//! so a remap that adds or drops a field does not blank the whole flow.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr};

use perisco_engine::event::Event;
use perisco_engine::record::{
    Endpoint, GrpcInfo, Header, HttpRequest, HttpResponse, IpInfo, L4, L7, L7Request, L7Response, Record, ServiceRef,
    TcpPorts, Workload, now_ns,
};
use serde_json::{Map, Value};

/// The record an event carries, if any: typed records as they are, documents converted.
/// Socket data and messages carry none.
pub fn record_of(event: &Event) -> Option<Cow<'_, Record>> {
    match event {
        Event::Record(r) => Some(Cow::Borrowed(r)),
        Event::Patched(p) if p.patch.is_empty() => Some(Cow::Borrowed(&p.record)),
        Event::Patched(p) => p
            .to_json_map()
            .ok()
            .and_then(|d| record_from_document(&d))
            .map(Cow::Owned),
        Event::Document(d) => record_from_document(d).map(Cow::Owned),
        Event::Socket(_) | Event::Message(_) => None,
    }
}

/// A record from a JSON object in the record shape; `None` when it has neither addresses
/// nor an HTTP request or response (nothing worth showing).
pub fn record_from_document(doc: &Map<String, Value>) -> Option<Record> {
    if let Ok(r) = serde_json::from_value::<Record>(Value::Object(doc.clone())) {
        return Some(r);
    }
    let v = |p: &str| lookup(doc, p);
    let ip = |p: &str| v(p).and_then(Value::as_str).and_then(|s| s.parse::<IpAddr>().ok());
    let request = v("l7.request.http").map(|h| HttpRequest {
        protocol: str_at(h, "protocol").unwrap_or_default().into(),
        method: str_at(h, "method").unwrap_or_default().into(),
        url: str_at(h, "url").unwrap_or_default().into(),
        headers: headers(h.get("headers")),
        ..Default::default()
    });
    let response = v("l7.response.http").map(|h| HttpResponse {
        protocol: str_at(h, "protocol").unwrap_or_default().into(),
        code: h
            .get("code")
            .and_then(as_u64)
            .and_then(|c| u16::try_from(c).ok())
            .unwrap_or(0),
        headers: headers(h.get("headers")),
        ..Default::default()
    });
    let client_ip = ip("ip.client");
    let server_ip = ip("ip.server");
    if request.is_none() && response.is_none() && client_ip.is_none() && server_ip.is_none() {
        return None;
    }
    let unspecified = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    let port = |p: &str| v(p).and_then(as_u64).and_then(|n| u16::try_from(n).ok()).unwrap_or(0);
    Some(Record {
        ts: v("ts").and_then(parse_ts).unwrap_or_else(now_ns),
        pid: v("pid")
            .and_then(as_u64)
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(0),
        ip: IpInfo::new(client_ip.unwrap_or(unspecified), server_ip.unwrap_or(unspecified)),
        l4: L4 {
            tcp: TcpPorts {
                client_port: port("l4.TCP.clientPort"),
                server_port: port("l4.TCP.serverPort"),
            },
        },
        l7: L7 {
            latency_ns: v("l7.latencyNs").and_then(as_u64),
            request: request.map(|http| L7Request { http }),
            response: response.map(|http| L7Response { http }),
            grpc: v("l7.grpc").map(|g| {
                Box::new(GrpcInfo {
                    service: str_at(g, "service").unwrap_or_default().into(),
                    method: str_at(g, "method").unwrap_or_default().into(),
                    status: g.get("status").and_then(as_u64).and_then(|n| u32::try_from(n).ok()),
                    message: str_at(g, "message"),
                    ..Default::default()
                })
            }),
        },
        client: v("client").map(endpoint).map(std::sync::Arc::new),
        server: v("server").map(endpoint).map(std::sync::Arc::new),
        client_service: v("clientService").and_then(service).map(std::sync::Arc::new),
        server_service: v("serverService").and_then(service).map(std::sync::Arc::new),
        comm: v("comm").and_then(Value::as_str).map(Into::into),
        container_id: None,
        node: v("node").and_then(Value::as_str).map(str::to_owned),
        incomplete: v("incomplete")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(|s| Cow::Owned(s.to_owned()))
                    .collect()
            })
            .unwrap_or_default(),
    })
}

fn lookup<'a>(doc: &'a Map<String, Value>, dotted: &str) -> Option<&'a Value> {
    let mut parts = dotted.split('.');
    let mut cur = doc.get(parts.next()?)?;
    for p in parts {
        cur = cur.get(p)?;
    }
    (!cur.is_null()).then_some(cur)
}

fn str_at(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}

/// Numbers or decimal strings (protobuf JSON int64).
fn as_u64(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

fn parse_ts(v: &Value) -> Option<u64> {
    match v {
        Value::String(s) => {
            let t = humantime::parse_rfc3339(s).ok()?;
            t.duration_since(std::time::UNIX_EPOCH)
                .ok()
                .map(|d| d.as_nanos() as u64)
        }
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

fn headers(v: Option<&Value>) -> Vec<Header> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|h| Some(Header::new(h.get("key")?.as_str()?, h.get("value")?.as_str()?)))
                .collect()
        })
        .unwrap_or_default()
}

fn endpoint(v: &Value) -> Endpoint {
    Endpoint {
        namespace: str_at(v, "namespace"),
        labels: v
            .get("labels")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
            .unwrap_or_default(),
        pod_name: str_at(v, "podName"),
        workload: v.get("workload").and_then(|w| {
            Some(Workload {
                name: str_at(w, "name")?,
                kind: str_at(w, "kind").unwrap_or_default(),
            })
        }),
    }
}

fn service(v: &Value) -> Option<ServiceRef> {
    Some(ServiceRef {
        name: str_at(v, "name")?,
        namespace: str_at(v, "namespace").unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn intact_records_round_trip() {
        let d = doc(serde_json::json!({
            "ts": "2023-04-11T03:43:29.619285359Z", "pid": 1,
            "ip": {"client": "10.0.0.1", "server": "10.0.0.2", "ipVersion": "IPv4"},
            "l4": {"TCP": {"clientPort": 40000, "serverPort": 80}},
            "l7": {"latencyNs": "1500", "request": {"http": {"protocol": "HTTP/1.1", "method": "GET", "url": "/"}}},
            "serverService": {"name": "books", "namespace": "shop"}
        }));
        let r = record_from_document(&d).unwrap();
        assert_eq!(r.ts, 1_681_184_609_619_285_359);
        assert_eq!(r.l7.latency_ns, Some(1500));
        assert_eq!(r.server_service.unwrap().name, "books");
    }

    #[test]
    fn reshaped_documents_keep_what_they_still_have() {
        // remap dropped `l4` and `pid`, added a field and made latency a number.
        let d = doc(serde_json::json!({
            "ts": "2023-04-11T03:43:29Z",
            "ip": {"client": "10.0.0.1", "server": "10.0.0.2"},
            "l7": {"latencyNs": 2500, "response": {"http": {"protocol": "HTTP/2", "code": 503}},
                   "request": {"http": {"method": "POST", "url": "/x", "headers": [{"key": "a", "value": "b"}]}}},
            "server": {"namespace": "shop", "podName": "books-1", "workload": {"name": "books", "kind": "Deployment"}},
            "team": "payments",
            "incomplete": ["request_truncated"]
        }));
        let r = record_from_document(&d).unwrap();
        assert_eq!(r.l4.tcp.server_port, 0);
        assert_eq!(r.l7.latency_ns, Some(2500));
        assert_eq!(r.l7.response.unwrap().http.code, 503);
        assert_eq!(r.l7.request.unwrap().http.headers, vec![Header::new("a", "b")]);
        assert_eq!(r.server.as_ref().unwrap().workload.as_ref().unwrap().name, "books");
        assert_eq!(r.incomplete, vec![Cow::Borrowed("request_truncated")]);
    }

    #[test]
    fn documents_without_an_exchange_are_skipped() {
        assert!(record_from_document(&doc(serde_json::json!({"message": "hello"}))).is_none());
    }
}
