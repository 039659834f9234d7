//! A small reader of the kernel's BTF (/sys/kernel/btf/vmlinux): struct member offsets
//! (through anonymous structs/unions), member sizes, enum values and function arity.
//! Rust eBPF programs get no CO-RE relocations, so the loader resolves the layout here
//! and hands the numbers to the programs.

use std::collections::HashMap;

use crate::Error;

const INT: u8 = 1;
const PTR: u8 = 2;
const ARRAY: u8 = 3;
const STRUCT: u8 = 4;
const UNION: u8 = 5;
const ENUM: u8 = 6;
const FWD: u8 = 7;
const TYPEDEF: u8 = 8;
const VOLATILE: u8 = 9;
const CONST: u8 = 10;
const RESTRICT: u8 = 11;
const FUNC: u8 = 12;
const FUNC_PROTO: u8 = 13;
const VAR: u8 = 14;
const DATASEC: u8 = 15;
const FLOAT: u8 = 16;
const DECL_TAG: u8 = 17;
const TYPE_TAG: u8 = 18;
const ENUM64: u8 = 19;

struct Member {
    name: u32,
    ty: u32,
    bit_off: u32,
}

#[derive(Default)]
struct Type {
    name: u32,
    kind: u8,
    /// size (int, struct, union, enum) or referenced type (ptr, typedef, func, …)
    size_or_type: u32,
    vlen: u32,
    members: Vec<Member>,
    enums: Vec<(u32, i64)>,
}

pub struct Btf {
    strings: Vec<u8>,
    /// index = type id; 0 is void
    types: Vec<Type>,
    /// (kind, name) -> ids, for lookups by name
    by_name: HashMap<(u8, String), Vec<u32>>,
}

fn bad(what: impl Into<String>) -> Error {
    Error::Btf(what.into())
}

fn u32_at(d: &[u8], o: usize) -> Result<u32, Error> {
    d.get(o..o + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| bad(format!("truncated at {o}")))
}

impl Btf {
    pub fn from_sys_fs() -> Result<Self, Error> {
        let path = "/sys/kernel/btf/vmlinux";
        let data =
            std::fs::read(path).map_err(|e| bad(format!("{path}: {e} (the kernel needs CONFIG_DEBUG_INFO_BTF)")))?;
        Self::parse(&data)
    }

    pub fn parse(d: &[u8]) -> Result<Self, Error> {
        if d.len() < 24 || d[0..2] != [0x9f, 0xeb] {
            return Err(bad("not little-endian BTF"));
        }
        let hdr_len = u32_at(d, 4)? as usize;
        let (type_off, type_len) = (u32_at(d, 8)? as usize, u32_at(d, 12)? as usize);
        let (str_off, str_len) = (u32_at(d, 16)? as usize, u32_at(d, 20)? as usize);
        let strings = d
            .get(hdr_len + str_off..hdr_len + str_off + str_len)
            .ok_or_else(|| bad("string section out of bounds"))?
            .to_vec();
        let mut types = vec![Type::default()];
        let mut o = hdr_len + type_off;
        let end = o + type_len;
        while o < end {
            let info = u32_at(d, o + 4)?;
            let mut t = Type {
                name: u32_at(d, o)?,
                kind: ((info >> 24) & 0x1f) as u8,
                size_or_type: u32_at(d, o + 8)?,
                vlen: info & 0xffff,
                ..Type::default()
            };
            let kflag = info >> 31 == 1;
            o += 12;
            match t.kind {
                INT | VAR | DECL_TAG => o += 4,
                PTR | FWD | TYPEDEF | VOLATILE | CONST | RESTRICT | FUNC | FLOAT | TYPE_TAG => {}
                ARRAY => o += 12,
                STRUCT | UNION => {
                    for _ in 0..t.vlen {
                        let off = u32_at(d, o + 8)?;
                        let bit_off = if kflag { off & 0xff_ffff } else { off };
                        t.members.push(Member {
                            name: u32_at(d, o)?,
                            ty: u32_at(d, o + 4)?,
                            bit_off,
                        });
                        o += 12;
                    }
                }
                ENUM => {
                    for _ in 0..t.vlen {
                        t.enums.push((u32_at(d, o)?, i64::from(u32_at(d, o + 4)? as i32)));
                        o += 8;
                    }
                }
                ENUM64 => {
                    for _ in 0..t.vlen {
                        let v = (u64::from(u32_at(d, o + 8)?) << 32) | u64::from(u32_at(d, o + 4)?);
                        t.enums.push((u32_at(d, o)?, v as i64));
                        o += 12;
                    }
                }
                FUNC_PROTO => o += 8 * t.vlen as usize,
                DATASEC => o += 12 * t.vlen as usize,
                k => return Err(bad(format!("unknown BTF kind {k}"))),
            }
            types.push(t);
        }
        let mut btf = Btf {
            strings,
            types,
            by_name: HashMap::new(),
        };
        for id in 1..btf.types.len() {
            let t = &btf.types[id];
            if t.name != 0 && matches!(t.kind, STRUCT | UNION | ENUM | ENUM64 | FUNC) {
                let key = (t.kind, btf.name(t.name).to_string());
                btf.by_name.entry(key).or_default().push(id as u32);
            }
        }
        Ok(btf)
    }

    fn name(&self, off: u32) -> &str {
        let s = self.strings.get(off as usize..).unwrap_or_default();
        let end = s.iter().position(|&b| b == 0).unwrap_or(s.len());
        std::str::from_utf8(&s[..end]).unwrap_or("")
    }

    fn ty(&self, id: u32) -> &Type {
        &self.types[(id as usize).min(self.types.len() - 1)]
    }

    /// A struct/union with members (not a forward declaration).
    fn find_struct(&self, name: &str) -> Option<u32> {
        [STRUCT, UNION]
            .iter()
            .filter_map(|k| self.by_name.get(&(*k, name.to_string())))
            .flatten()
            .copied()
            .find(|&id| !self.ty(id).members.is_empty())
    }

    /// Through typedef / const / volatile / restrict / type tags.
    fn resolve(&self, mut id: u32) -> u32 {
        for _ in 0..32 {
            let t = self.ty(id);
            if !matches!(t.kind, TYPEDEF | VOLATILE | CONST | RESTRICT | TYPE_TAG) {
                break;
            }
            id = t.size_or_type;
        }
        id
    }

    /// (bit offset, type id) of member `name`, looking inside anonymous members.
    fn member(&self, id: u32, name: &str) -> Option<(u32, u32)> {
        let t = self.ty(self.resolve(id));
        if let Some(m) = t.members.iter().find(|m| m.name != 0 && self.name(m.name) == name) {
            return Some((m.bit_off, m.ty));
        }
        t.members.iter().filter(|m| m.name == 0).find_map(|m| {
            let inner = self.resolve(m.ty);
            if !matches!(self.ty(inner).kind, STRUCT | UNION) {
                return None;
            }
            self.member(inner, name).map(|(off, ty)| (m.bit_off + off, ty))
        })
    }

    fn locate(&self, st: &str, path: &[&str]) -> Result<(u32, u32), Error> {
        let mut id = self
            .find_struct(st)
            .ok_or_else(|| bad(format!("struct {st} not in BTF")))?;
        let mut bits = 0;
        for (i, p) in path.iter().enumerate() {
            let (off, ty) = self
                .member(id, p)
                .ok_or_else(|| bad(format!("{st}.{} not in BTF", path[..=i].join("."))))?;
            bits += off;
            id = ty;
        }
        if bits % 8 != 0 {
            return Err(bad(format!("{st}.{} is a bitfield", path.join("."))));
        }
        Ok((bits / 8, id))
    }

    /// Byte offset of `path` (e.g. `["__sk_common", "skc_dport"]`) in struct `st`.
    pub fn offset_of(&self, st: &str, path: &[&str]) -> Result<u32, Error> {
        self.locate(st, path).map(|(off, _)| off)
    }

    /// Size in bytes of the member's type.
    pub fn member_size(&self, st: &str, path: &[&str]) -> Result<u32, Error> {
        let (_, ty) = self.locate(st, path)?;
        let t = self.ty(self.resolve(ty));
        match t.kind {
            INT | ENUM | ENUM64 | STRUCT | UNION => Ok(t.size_or_type),
            PTR => Ok(8),
            k => Err(bad(format!("{st}.{}: no size for BTF kind {k}", path.join(".")))),
        }
    }

    pub fn enum_value(&self, en: &str, variant: &str) -> Option<i64> {
        [ENUM, ENUM64]
            .iter()
            .filter_map(|k| self.by_name.get(&(*k, en.to_string())))
            .flatten()
            .flat_map(|&id| self.ty(id).enums.iter())
            .find(|(n, _)| self.name(*n) == variant)
            .map(|(_, v)| *v)
    }

    pub fn has_func(&self, func: &str) -> bool {
        self.by_name.contains_key(&(FUNC, func.to_string()))
    }

    /// Number of parameters of kernel function `func`.
    pub fn func_nargs(&self, func: &str) -> Result<u32, Error> {
        let id = *self
            .by_name
            .get(&(FUNC, func.to_string()))
            .and_then(|v| v.first())
            .ok_or_else(|| bad(format!("function {func} not in BTF")))?;
        let proto = self.ty(self.ty(id).size_or_type);
        if proto.kind != FUNC_PROTO {
            return Err(bad(format!("{func}: not a function prototype")));
        }
        Ok(proto.vlen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a BTF blob: struct outer { int a; union { int b; long c; }; }, enum e { X = 7 }.
    fn sample() -> Vec<u8> {
        let strings = b"\0int\0outer\0a\0b\0c\0e\0X\0f\0".to_vec();
        let s = |name: &str| {
            strings
                .windows(name.len() + 2)
                .position(|w| w[0] == 0 && &w[1..=name.len()] == name.as_bytes() && w[name.len() + 1] == 0)
                .unwrap() as u32
                + 1
        };
        let mut t = Vec::new();
        let mut push = |v: &[u32]| v.iter().for_each(|x| t.extend_from_slice(&x.to_le_bytes()));
        // 1: int (4 bytes)
        push(&[s("int"), (u32::from(INT)) << 24, 4, 32]);
        // 2: anonymous union { b: int @0, c: int @0 }
        push(&[0, (u32::from(UNION) << 24) | 2, 8, s("b"), 1, 0, s("c"), 1, 0]);
        // 3: struct outer { a: int @0, <anon>: union @64 }
        push(&[s("outer"), (u32::from(STRUCT) << 24) | 2, 16, s("a"), 1, 0, 0, 2, 64]);
        // 4: enum e { X = 7 }
        push(&[s("e"), (u32::from(ENUM) << 24) | 1, 4, s("X"), 7]);
        // 5: func proto (int, int); 6: func f
        push(&[0, (u32::from(FUNC_PROTO) << 24) | 2, 1, 0, 1, 0, 1]);
        push(&[s("f"), u32::from(FUNC) << 24, 5]);
        let mut d = vec![0x9f, 0xeb, 1, 0];
        for v in [24u32, 0, t.len() as u32, t.len() as u32, strings.len() as u32] {
            d.extend_from_slice(&v.to_le_bytes());
        }
        d.extend_from_slice(&t);
        d.extend_from_slice(&strings);
        d
    }

    #[test]
    fn resolves_members_through_anonymous_unions() {
        let b = Btf::parse(&sample()).unwrap();
        assert_eq!(b.offset_of("outer", &["a"]).unwrap(), 0);
        assert_eq!(b.offset_of("outer", &["c"]).unwrap(), 8);
        assert_eq!(b.member_size("outer", &["b"]).unwrap(), 4);
        assert!(b.offset_of("outer", &["zz"]).is_err());
        assert_eq!(b.enum_value("e", "X"), Some(7));
        assert_eq!(b.func_nargs("f").unwrap(), 2);
        assert!(!b.has_func("g"));
    }

    #[test]
    fn rejects_garbage() {
        assert!(Btf::parse(b"hello world, not btf at all").is_err());
        let mut d = sample();
        d.truncate(40);
        assert!(Btf::parse(&d).is_err());
    }

    #[test]
    fn reads_this_kernel() {
        let Ok(b) = Btf::from_sys_fs() else {
            eprintln!("SKIPPED reads_this_kernel: no /sys/kernel/btf/vmlinux");
            return;
        };
        assert!(b.offset_of("sock", &["__sk_common", "skc_dport"]).is_ok());
        assert!(b.offset_of("task_struct", &["files"]).is_ok());
    }
}
