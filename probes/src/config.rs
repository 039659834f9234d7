//! `type = "ebpf_socket"`: the live capture source's configuration.

use std::net::IpAddr;

use perisco_engine::component::{BoxError, BuildContext, ComponentConfig, Source, SourceConfig, ValueError};
use perisco_engine::event::DataType;
use perisco_probes_common::{CHUNK, MAX_CAPTURE, ROLE_CLIENT, ROLE_SERVER};
use serde::Deserialize;

/// Which kernel hooks capture the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Hook {
    /// fentry/fexit, else kprobes, else tracepoints: the first that loads.
    #[default]
    Auto,
    Fentry,
    Kprobe,
    /// Socket tracepoints (sock_send_length, sock_recv_length, inet_sock_set_state; Linux
    /// 6.3+ on x86-64) where the kernel has them, else syscall tracepoints.
    Tracepoint,
    /// Syscall tracepoints only (read, write, sendmsg, accept, close, …): what kernels
    /// without the socket tracepoints use; selectable to compare the two.
    SyscallTracepoint,
}

impl Hook {
    pub fn as_str(self) -> &'static str {
        match self {
            Hook::Auto => "auto",
            Hook::Fentry => "fentry",
            Hook::Kprobe => "kprobe",
            Hook::Tracepoint => "tracepoint",
            Hook::SyscallTracepoint => "syscall_tracepoint",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoleName {
    Server,
    Client,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EbpfSocketConfig {
    /// Trace only connections whose peer or local address is inside one of these.
    #[serde(default)]
    pub cidrs: Vec<String>,
    /// Trace only connections whose local or peer port is one of these.
    #[serde(default)]
    pub ports: Vec<u16>,
    /// Payload bytes captured per message (the true length is always reported).
    #[serde(default = "default_max_capture")]
    pub max_capture_bytes: u32,
    #[serde(default)]
    pub hook: Hook,
    /// Which side of a connection is reported: the accepted (server) socket by default,
    /// so every exchange is seen once, at its server.
    #[serde(default = "default_roles")]
    pub roles: Vec<RoleName>,
    /// Kernel → userspace ring buffer size (power of two, at least one page).
    #[serde(default = "default_ring")]
    pub ring_buffer_bytes: u32,
    /// Events per batch sent downstream.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
}

fn default_max_capture() -> u32 {
    CHUNK as u32
}
fn default_roles() -> Vec<RoleName> {
    vec![RoleName::Server]
}
fn default_ring() -> u32 {
    16 << 20
}
fn default_batch() -> usize {
    512
}

impl Default for EbpfSocketConfig {
    fn default() -> Self {
        EbpfSocketConfig {
            cidrs: vec![],
            ports: vec![],
            max_capture_bytes: default_max_capture(),
            hook: Hook::Auto,
            roles: default_roles(),
            ring_buffer_bytes: default_ring(),
            batch_size: default_batch(),
        }
    }
}

/// A parsed CIDR: network address (host bits cleared) and prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl std::str::FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .trim()
            .parse()
            .map_err(|_| format!("`{s}`: not an IP address or CIDR"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|&p| p <= max)
                .ok_or_else(|| format!("`{s}`: prefix must be 0..={max}"))?,
            None => max,
        };
        let addr = match addr {
            IpAddr::V4(v) => {
                let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) };
                IpAddr::V4((u32::from(v) & mask).into())
            }
            IpAddr::V6(v) => {
                let mask = if prefix == 0 { 0 } else { u128::MAX << (128 - prefix) };
                IpAddr::V6((u128::from(v) & mask).into())
            }
        };
        Ok(Cidr { addr, prefix })
    }
}

impl EbpfSocketConfig {
    /// The CIDRs, parsed (invalid ones are reported by `validate`).
    pub fn parsed_cidrs(&self) -> Vec<Cidr> {
        self.cidrs.iter().filter_map(|c| c.parse().ok()).collect()
    }

    pub fn role_mask(&self) -> u8 {
        self.roles.iter().fold(0, |m, r| {
            m | match r {
                RoleName::Server => ROLE_SERVER,
                RoleName::Client => ROLE_CLIENT,
            }
        })
    }

    /// True when `new` differs from `self` only in what the kernel maps hold (filters,
    /// roles, capture size, batch size): applied in place, programs stay attached.
    pub fn only_filters_differ(&self, new: &Self) -> bool {
        self.hook == new.hook && self.ring_buffer_bytes == new.ring_buffer_bytes
    }
}

impl ComponentConfig for EbpfSocketConfig {
    fn type_name(&self) -> &'static str {
        "ebpf_socket"
    }

    fn validate(&self) -> Vec<ValueError> {
        let mut errs = Vec::new();
        for (i, c) in self.cidrs.iter().enumerate() {
            if let Err(e) = c.parse::<Cidr>() {
                errs.push(ValueError::at(format!("cidrs.{i}"), e));
            }
        }
        if let Some(i) = self.ports.iter().position(|&p| p == 0) {
            errs.push(ValueError::at(format!("ports.{i}"), "port 0 matches nothing"));
        }
        if self.max_capture_bytes == 0 || self.max_capture_bytes > MAX_CAPTURE {
            errs.push(ValueError::at(
                "max_capture_bytes",
                format!("must be 1..={MAX_CAPTURE}"),
            ));
        }
        if self.roles.is_empty() {
            errs.push(ValueError::at("roles", "needs at least one of \"server\", \"client\""));
        }
        let rb = self.ring_buffer_bytes;
        if !rb.is_power_of_two() || rb < 4096 {
            errs.push(ValueError::at(
                "ring_buffer_bytes",
                "must be a power of two, at least 4096",
            ));
        }
        if self.batch_size == 0 {
            errs.push(ValueError::at("batch_size", "must be at least 1"));
        }
        errs
    }
}

impl SourceConfig for EbpfSocketConfig {
    fn output(&self) -> DataType {
        DataType::Socket
    }

    fn build(&self, cx: &BuildContext) -> Result<Box<dyn Source>, BoxError> {
        Ok(Box::new(crate::source::EbpfSocket::new(self.clone(), cx)))
    }

    fn can_reconfigure(&self, new: &Self) -> bool {
        self.only_filters_differ(new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_parse_and_mask() {
        let c: Cidr = "10.1.2.3/8".parse().unwrap();
        assert_eq!(c.addr.to_string(), "10.0.0.0");
        assert_eq!(c.prefix, 8);
        let c: Cidr = "fd00::1/16".parse().unwrap();
        assert_eq!(c.addr.to_string(), "fd00::");
        assert_eq!("127.0.0.1".parse::<Cidr>().unwrap().prefix, 32);
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("nope".parse::<Cidr>().is_err());
        assert_eq!("0.0.0.0/0".parse::<Cidr>().unwrap().prefix, 0);
    }

    #[test]
    fn validate_reports_every_bad_key() {
        let c = EbpfSocketConfig {
            cidrs: vec!["10.0.0.0/8".into(), "bad".into()],
            ports: vec![80, 0],
            max_capture_bytes: 20000,
            roles: vec![],
            ring_buffer_bytes: 5000,
            ..Default::default()
        };
        let keys: Vec<_> = c.validate().into_iter().filter_map(|e| e.key).collect();
        assert_eq!(
            keys,
            ["cidrs.1", "ports.1", "max_capture_bytes", "roles", "ring_buffer_bytes"]
        );
        assert!(EbpfSocketConfig::default().validate().is_empty());
    }

    #[test]
    fn deserialises_with_defaults_and_rejects_unknown_keys() {
        let c: EbpfSocketConfig =
            toml::from_str("ports = [80]\nroles = [\"server\", \"client\"]\nhook = \"tracepoint\"").unwrap();
        assert_eq!(c.ports, [80]);
        assert_eq!(c.role_mask(), ROLE_SERVER | ROLE_CLIENT);
        assert_eq!(c.hook, Hook::Tracepoint);
        assert_eq!(c.max_capture_bytes, 4096);
        assert!(toml::from_str::<EbpfSocketConfig>("portz = [80]").is_err());
    }

    #[test]
    fn filters_reconfigure_in_place_but_hooks_do_not() {
        let a = EbpfSocketConfig::default();
        let b = EbpfSocketConfig {
            ports: vec![8080],
            cidrs: vec!["10.0.0.0/8".into()],
            ..a.clone()
        };
        assert!(a.can_reconfigure(&b));
        let c = EbpfSocketConfig {
            hook: Hook::Kprobe,
            ..a.clone()
        };
        assert!(!a.can_reconfigure(&c));
        let d = EbpfSocketConfig {
            ring_buffer_bytes: 1 << 20,
            ..a.clone()
        };
        assert!(!a.can_reconfigure(&d));
    }
}
