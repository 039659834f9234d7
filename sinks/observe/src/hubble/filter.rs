//! Hubble's FlowFilter semantics on perisco's flows.
//!
//! Within one filter every field that is set must match (and); within a field any listed
//! value may match (or). A request keeps a flow that matches any whitelist filter (or
//! every flow when there is none) and no blacklist filter. Filters on what perisco never
//! knows (FQDNs, DNS queries, TCP flags, trace ids) match no flow, as they would match
//! no L7 HTTP flow in Hubble.

use std::net::IpAddr;

use regex::Regex;

use crate::proto::flow::{self, Flow, FlowFilter};

#[derive(Debug, thiserror::Error)]
#[error("invalid filter {field}: {message}")]
pub struct FilterError {
    field: &'static str,
    message: String,
}

impl FilterError {
    /// What is wrong, without the field name.
    pub fn message(&self) -> &str {
        &self.message
    }
}

fn bad(field: &'static str, message: impl Into<String>) -> FilterError {
    FilterError {
        field,
        message: message.into(),
    }
}

/// A whitelist and a blacklist, compiled once per request.
pub struct Filters {
    whitelist: Vec<Compiled>,
    blacklist: Vec<Compiled>,
}

impl Filters {
    pub fn new(whitelist: &[FlowFilter], blacklist: &[FlowFilter]) -> Result<Self, FilterError> {
        Ok(Filters {
            whitelist: whitelist.iter().map(Compiled::new).collect::<Result<_, _>>()?,
            blacklist: blacklist.iter().map(Compiled::new).collect::<Result<_, _>>()?,
        })
    }

    pub fn keep(&self, f: &Flow) -> bool {
        (self.whitelist.is_empty() || self.whitelist.iter().any(|c| c.matches(f)))
            && !self.blacklist.iter().any(|c| c.matches(f))
    }
}

/// "namespace/name-prefix"; without a slash the namespace is "default" (as in Hubble).
struct NamespacedPrefix {
    namespace: String,
    prefix: String,
}

impl NamespacedPrefix {
    fn parse(field: &'static str, s: &str) -> Result<Self, FilterError> {
        let (namespace, prefix) = match s.split_once('/') {
            Some((ns, p)) => (ns.to_owned(), p.to_owned()),
            None => ("default".to_owned(), s.to_owned()),
        };
        if namespace.is_empty() && prefix.is_empty() {
            return Err(bad(field, format!("must be [namespace/][name], got {s:?}")));
        }
        Ok(NamespacedPrefix { namespace, prefix })
    }

    fn matches(&self, namespace: &str, name: &str) -> bool {
        // "ns/" matches anything in the namespace; "ns/prefix" needs a name with the prefix.
        self.namespace == namespace
            && (self.prefix.is_empty() && !namespace.is_empty() || !name.is_empty() && name.starts_with(&self.prefix))
    }
}

enum IpMatch {
    Exact(IpAddr),
    Cidr(IpAddr, u8),
}

impl IpMatch {
    fn parse(field: &'static str, s: &str) -> Result<Self, FilterError> {
        if let Some((ip, len)) = s.split_once('/') {
            let ip: IpAddr = ip.parse().map_err(|e| bad(field, format!("{s:?}: {e}")))?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let len: u8 = len
                .parse()
                .ok()
                .filter(|l| *l <= max)
                .ok_or_else(|| bad(field, format!("{s:?}: bad prefix")))?;
            Ok(IpMatch::Cidr(ip, len))
        } else {
            s.parse()
                .map(IpMatch::Exact)
                .map_err(|e| bad(field, format!("{s:?}: {e}")))
        }
    }

    fn matches(&self, ip: &str) -> bool {
        let Ok(ip) = ip.parse::<IpAddr>() else { return false };
        match *self {
            IpMatch::Exact(want) => want == ip,
            IpMatch::Cidr(net, len) => match (net, ip) {
                (IpAddr::V4(n), IpAddr::V4(a)) => {
                    prefix_eq(u128::from(u32::from(n)), u128::from(u32::from(a)), 32, len)
                }
                (IpAddr::V6(n), IpAddr::V6(a)) => prefix_eq(u128::from(n), u128::from(a), 128, len),
                _ => false,
            },
        }
    }
}

fn prefix_eq(a: u128, b: u128, bits: u32, len: u8) -> bool {
    let len = u32::from(len);
    if len == 0 {
        return true;
    }
    let shift = bits - len;
    (a >> shift) == (b >> shift)
}

/// One requirement of a Kubernetes label selector.
enum LabelReq {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// Hubble labels carry a source ("k8s:app=x"); perisco's don't. Compare without it.
fn strip_source(key: &str) -> &str {
    match key.split_once(':') {
        Some(("k8s" | "any" | "container" | "reserved", rest)) => rest,
        _ => key,
    }
}

/// A Kubernetes label selector (`a=b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`).
pub struct LabelSelector(Vec<LabelReq>);

impl LabelSelector {
    pub fn parse(field: &'static str, s: &str) -> Result<Self, FilterError> {
        let mut reqs = Vec::new();
        for part in split_top_level(s) {
            let p = part.trim();
            if p.is_empty() {
                continue;
            }
            let err = || bad(field, format!("bad label selector {s:?}"));
            let req = if let Some(k) = p.strip_prefix('!') {
                LabelReq::NotExists(strip_source(k.trim()).to_owned())
            } else if let Some((k, v)) = p.split_once("!=") {
                LabelReq::NotEq(strip_source(k.trim()).to_owned(), v.trim().to_owned())
            } else if let Some((k, v)) = p.split_once("==").or_else(|| p.split_once('=')) {
                LabelReq::Eq(strip_source(k.trim()).to_owned(), v.trim().to_owned())
            } else if let Some((k, rest)) = split_set_op(p, " notin ") {
                LabelReq::NotIn(strip_source(k).to_owned(), set_values(rest).ok_or_else(err)?)
            } else if let Some((k, rest)) = split_set_op(p, " in ") {
                LabelReq::In(strip_source(k).to_owned(), set_values(rest).ok_or_else(err)?)
            } else if p.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:".contains(c)) {
                LabelReq::Exists(strip_source(p).to_owned())
            } else {
                return Err(err());
            };
            reqs.push(req);
        }
        if reqs.is_empty() {
            return Err(bad(field, "empty label selector"));
        }
        Ok(LabelSelector(reqs))
    }

    /// `labels` as `key=value` strings.
    pub fn matches(&self, labels: &[String]) -> bool {
        let get = |key: &str| {
            labels.iter().find_map(|l| {
                let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
                (strip_source(k) == key).then_some(v)
            })
        };
        self.0.iter().all(|r| match r {
            LabelReq::Eq(k, v) => get(k) == Some(v.as_str()),
            LabelReq::NotEq(k, v) => get(k) != Some(v.as_str()),
            LabelReq::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            LabelReq::NotIn(k, vs) => get(k).is_none_or(|x| !vs.iter().any(|v| v == x)),
            LabelReq::Exists(k) => get(k).is_some(),
            LabelReq::NotExists(k) => get(k).is_none(),
        })
    }
}

/// Split on commas outside parentheses ("a in (x,y),b" → ["a in (x,y)", "b"]).
fn split_top_level(s: &str) -> Vec<&str> {
    let (mut out, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn split_set_op<'a>(p: &'a str, op: &str) -> Option<(&'a str, &'a str)> {
    p.split_once(op).map(|(k, r)| (k.trim(), r.trim()))
}

fn set_values(s: &str) -> Option<Vec<String>> {
    let inner = s.strip_prefix('(')?.strip_suffix(')')?;
    Some(
        inner
            .split(',')
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .collect(),
    )
}

/// "200" matches exactly; "5+" / "40+" match codes starting with the digits.
enum StatusMatch {
    Exact(String),
    Prefix(String),
}

impl StatusMatch {
    fn parse(s: &str) -> Result<Self, FilterError> {
        let digits = s.strip_suffix('+').unwrap_or(s);
        if digits.is_empty() || digits.len() > 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad(
                "http_status_code",
                format!("{s:?}: expected e.g. \"404\" or \"5+\""),
            ));
        }
        Ok(if s.ends_with('+') {
            StatusMatch::Prefix(digits.into())
        } else {
            StatusMatch::Exact(digits.into())
        })
    }

    fn matches(&self, code: u32) -> bool {
        if code == 0 {
            return false;
        }
        let c = code.to_string();
        match self {
            StatusMatch::Exact(e) => c == *e,
            StatusMatch::Prefix(p) => c.starts_with(p.as_str()),
        }
    }
}

fn glob(field: &'static str, pattern: &str) -> Result<Regex, FilterError> {
    // "cluster/node*": perisco nodes carry no cluster name, so only the node part counts.
    let name = pattern.rsplit_once('/').map_or(pattern, |(_, n)| n);
    let name = if name.is_empty() { "*" } else { name };
    let re = format!("^{}$", regex::escape(name).replace(r"\*", ".*"));
    Regex::new(&re).map_err(|e| bad(field, e.to_string()))
}

fn ports(field: &'static str, v: &[String]) -> Result<Vec<u32>, FilterError> {
    v.iter()
        .map(|p| {
            p.trim()
                .parse::<u16>()
                .map(u32::from)
                .map_err(|_| bad(field, format!("{p:?} is not a port")))
        })
        .collect()
}

fn endpoint_of(e: Option<&flow::Endpoint>) -> (&str, &str, &[String], &[flow::Workload]) {
    e.map_or(("", "", &[][..], &[][..]), |e| {
        (
            e.namespace.as_str(),
            e.pod_name.as_str(),
            &e.labels[..],
            &e.workloads[..],
        )
    })
}

/// One side's criteria.
#[derive(Default)]
struct Side {
    ips: Vec<IpMatch>,
    pods: Vec<NamespacedPrefix>,
    labels: Vec<LabelSelector>,
    services: Vec<NamespacedPrefix>,
    workloads: Vec<flow::Workload>,
    ports: Vec<u32>,
    fqdn: bool,
    identities: Vec<u32>,
}

struct SideRef<'a> {
    ip: &'a str,
    endpoint: Option<&'a flow::Endpoint>,
    service: Option<&'a flow::Service>,
    port: u32,
}

impl Side {
    #[allow(clippy::too_many_arguments)]
    fn new(
        ip: &[String],
        pod: &[String],
        label: &[String],
        service: &[String],
        workload: &[flow::Workload],
        port: &[String],
        fqdn: &[String],
        identity: &[u32],
        names: [&'static str; 5],
    ) -> Result<Self, FilterError> {
        Ok(Side {
            ips: ip
                .iter()
                .map(|s| IpMatch::parse(names[0], s))
                .collect::<Result<_, _>>()?,
            pods: pod
                .iter()
                .map(|s| NamespacedPrefix::parse(names[1], s))
                .collect::<Result<_, _>>()?,
            labels: label
                .iter()
                .map(|s| LabelSelector::parse(names[2], s))
                .collect::<Result<_, _>>()?,
            services: service
                .iter()
                .map(|s| NamespacedPrefix::parse(names[3], s))
                .collect::<Result<_, _>>()?,
            workloads: workload.to_vec(),
            ports: ports(names[4], port)?,
            fqdn: !fqdn.is_empty(),
            identities: identity.to_vec(),
        })
    }

    fn matches(&self, s: &SideRef<'_>) -> bool {
        let (ns, pod, labels, workloads) = endpoint_of(s.endpoint);
        (self.ips.is_empty() || self.ips.iter().any(|m| m.matches(s.ip)))
            && (self.pods.is_empty() || self.pods.iter().any(|m| m.matches(ns, pod)))
            && (self.labels.is_empty() || self.labels.iter().any(|m| m.matches(labels)))
            && (self.services.is_empty()
                || s.service
                    .is_some_and(|svc| self.services.iter().any(|m| m.matches(&svc.namespace, &svc.name))))
            && (self.workloads.is_empty()
                || self.workloads.iter().any(|w| {
                    workloads
                        .iter()
                        .any(|x| (w.name.is_empty() || w.name == x.name) && (w.kind.is_empty() || w.kind == x.kind))
                }))
            && (self.ports.is_empty() || self.ports.contains(&s.port))
            && !self.fqdn
            && (self.identities.is_empty() || self.identities.contains(&s.endpoint.map_or(0, |e| e.identity)))
    }
}

struct Compiled {
    uuid: Vec<String>,
    source: Side,
    destination: Side,
    traffic_direction: Vec<i32>,
    verdict: Vec<i32>,
    event_type: Vec<flow::EventTypeFilter>,
    status: Vec<StatusMatch>,
    protocol: Vec<String>,
    reply: Vec<bool>,
    methods: Vec<String>,
    paths: Vec<Regex>,
    node_names: Vec<Regex>,
    ip_version: Vec<i32>,
    /// A criterion no perisco flow can meet (DNS query, TCP flags, trace id).
    impossible: bool,
}

impl Compiled {
    fn new(f: &FlowFilter) -> Result<Self, FilterError> {
        Ok(Compiled {
            uuid: f.uuid.clone(),
            source: Side::new(
                &f.source_ip,
                &f.source_pod,
                &f.source_label,
                &f.source_service,
                &f.source_workload,
                &f.source_port,
                &f.source_fqdn,
                &f.source_identity,
                [
                    "source_ip",
                    "source_pod",
                    "source_label",
                    "source_service",
                    "source_port",
                ],
            )?,
            destination: Side::new(
                &f.destination_ip,
                &f.destination_pod,
                &f.destination_label,
                &f.destination_service,
                &f.destination_workload,
                &f.destination_port,
                &f.destination_fqdn,
                &f.destination_identity,
                [
                    "destination_ip",
                    "destination_pod",
                    "destination_label",
                    "destination_service",
                    "destination_port",
                ],
            )?,
            traffic_direction: f.traffic_direction.clone(),
            verdict: f.verdict.clone(),
            event_type: f.event_type.clone(),
            status: f
                .http_status_code
                .iter()
                .map(|s| StatusMatch::parse(s))
                .collect::<Result<_, _>>()?,
            protocol: f.protocol.iter().map(|p| p.to_ascii_lowercase()).collect(),
            reply: f.reply.clone(),
            methods: f.http_method.iter().map(|m| m.to_ascii_uppercase()).collect(),
            paths: f
                .http_path
                .iter()
                .map(|p| Regex::new(p).map_err(|e| bad("http_path", e.to_string())))
                .collect::<Result<_, _>>()?,
            node_names: f
                .node_name
                .iter()
                .map(|p| glob("node_name", p))
                .collect::<Result<_, _>>()?,
            ip_version: f.ip_version.clone(),
            impossible: !f.dns_query.is_empty() || !f.tcp_flags.is_empty() || !f.trace_id.is_empty(),
        })
    }

    fn matches(&self, f: &Flow) -> bool {
        if self.impossible {
            return false;
        }
        let (src_ip, dst_ip, ipv) = f.ip.as_ref().map_or(("", "", 0), |ip| {
            (ip.source.as_str(), ip.destination.as_str(), ip.ip_version)
        });
        let (src_port, dst_port) = match f.l4.as_ref().and_then(|l| l.protocol.as_ref()) {
            Some(flow::layer4::Protocol::Tcp(t)) => (t.source_port, t.destination_port),
            Some(flow::layer4::Protocol::Udp(u)) => (u.source_port, u.destination_port),
            None => (0, 0),
        };
        let http = f.l7.as_ref().and_then(|l| l.record.as_ref()).map(|r| match r {
            flow::layer7::Record::Http(h) => h,
        });
        let src = SideRef {
            ip: src_ip,
            endpoint: f.source.as_ref(),
            service: f.source_service.as_ref(),
            port: src_port,
        };
        let dst = SideRef {
            ip: dst_ip,
            endpoint: f.destination.as_ref(),
            service: f.destination_service.as_ref(),
            port: dst_port,
        };
        let event_type = f.event_type.as_ref().map_or((0, 0), |e| (e.r#type, e.sub_type));
        (self.uuid.is_empty() || self.uuid.contains(&f.uuid))
            && self.source.matches(&src)
            && self.destination.matches(&dst)
            && (self.traffic_direction.is_empty() || self.traffic_direction.contains(&f.traffic_direction))
            && (self.verdict.is_empty() || self.verdict.contains(&f.verdict))
            && (self.event_type.is_empty()
                || self
                    .event_type
                    .iter()
                    .any(|e| e.r#type == event_type.0 && (!e.match_sub_type || e.sub_type == event_type.1)))
            && (self.status.is_empty() || http.is_some_and(|h| self.status.iter().any(|s| s.matches(h.code))))
            && (self.protocol.is_empty() || self.protocol.iter().any(|p| protocol_matches(p, f, http.is_some())))
            && (self.reply.is_empty() || f.is_reply.is_some_and(|r| self.reply.contains(&r)))
            && (self.methods.is_empty()
                || http.is_some_and(|h| self.methods.iter().any(|m| h.method.eq_ignore_ascii_case(m))))
            && (self.paths.is_empty()
                || http.is_some_and(|h| self.paths.iter().any(|re| re.is_match(url_path(&h.url)))))
            && (self.node_names.is_empty() || self.node_names.iter().any(|re| re.is_match(&f.node_name)))
            && (self.ip_version.is_empty() || self.ip_version.contains(&ipv))
    }
}

fn protocol_matches(p: &str, f: &Flow, is_http: bool) -> bool {
    match p {
        "http" => is_http,
        "tcp" => matches!(
            f.l4.as_ref().and_then(|l| l.protocol.as_ref()),
            Some(flow::layer4::Protocol::Tcp(_))
        ),
        "udp" => matches!(
            f.l4.as_ref().and_then(|l| l.protocol.as_ref()),
            Some(flow::layer4::Protocol::Udp(_))
        ),
        _ => false,
    }
}

/// The path of a request target: "/a/b?x=1" → "/a/b"; absolute-form URLs lose scheme and host.
fn url_path(url: &str) -> &str {
    let rest = url
        .split_once("://")
        .map_or(url, |(_, r)| r.find('/').map_or("/", |i| &r[i..]));
    rest.split(['?', '#']).next().unwrap_or(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaced_prefix_follows_hubble() {
        let p = NamespacedPrefix::parse("source_pod", "kube-system/").unwrap();
        assert!(p.matches("kube-system", "coredns-1"));
        assert!(!p.matches("default", "coredns-1"));
        let p = NamespacedPrefix::parse("source_pod", "books").unwrap();
        assert!(p.matches("default", "books-675456b8d-prpht"));
        assert!(!p.matches("shop", "books-675456b8d-prpht"));
        assert!(NamespacedPrefix::parse("source_pod", "/").is_err());
    }

    #[test]
    fn cidr_and_exact_ips() {
        assert!(IpMatch::parse("x", "10.244.0.0/16").unwrap().matches("10.244.1.42"));
        assert!(!IpMatch::parse("x", "10.244.0.0/16").unwrap().matches("10.245.1.42"));
        assert!(IpMatch::parse("x", "10.244.1.42").unwrap().matches("10.244.1.42"));
        assert!(IpMatch::parse("x", "fd00::/8").unwrap().matches("fd00::1"));
        assert!(!IpMatch::parse("x", "fd00::/8").unwrap().matches("10.0.0.1"));
        assert!(IpMatch::parse("x", "10.0.0.0/33").is_err());
    }

    #[test]
    fn label_selectors() {
        let labels = vec!["app=books".to_string(), "tier=backend".to_string()];
        let m = |s: &str| LabelSelector::parse("l", s).unwrap().matches(&labels);
        assert!(m("app=books"));
        assert!(m("k8s:app=books"));
        assert!(m("app in (books, web),tier"));
        assert!(!m("app notin (books)"));
        assert!(m("!missing"));
        assert!(!m("app!=books"));
    }

    #[test]
    fn status_prefixes() {
        assert!(StatusMatch::parse("5+").unwrap().matches(503));
        assert!(!StatusMatch::parse("5+").unwrap().matches(404));
        assert!(StatusMatch::parse("404").unwrap().matches(404));
        assert!(!StatusMatch::parse("40").unwrap().matches(404));
        assert!(StatusMatch::parse("x+").is_err());
    }

    #[test]
    fn url_paths() {
        assert_eq!(url_path("/books.json?order=x"), "/books.json");
        assert_eq!(url_path("http://h:80/a/b#f"), "/a/b");
        assert_eq!(url_path("http://h"), "/");
    }
}
