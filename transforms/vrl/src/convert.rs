//! Records ↔ VRL values, once per record.
//!
//! A typed [`Record`] becomes a VRL value through a serde `Serializer` that builds the
//! value directly (no `serde_json::Value` in between), so field names and formats are
//! exactly those of the JSON the sinks write. A [`Selection`] limits the conversion to
//! the paths a program reads: a filter on `.l7.response.http.code` converts one integer
//! and three small objects, not the headers.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;
use serde::ser::{self, Impossible};
use vrl::path::{OwnedSegment, OwnedTargetPath, OwnedValuePath, PathPrefix};
use vrl::prelude::{Bytes, NotNan};
use vrl::value::{KeyString, ObjectMap, Value};

/// Which parts of the event a program may read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// This value and everything below it.
    All,
    /// Only these fields of an object (each with its own selection).
    Fields(BTreeMap<String, Selection>),
}

static ALL: Selection = Selection::All;

impl Selection {
    /// The union of the event paths a compiled program queries (its `target_queries`).
    /// A query of the root (`.`, or `get(...)`), or an index inside a path, selects the
    /// whole value at that point.
    pub fn from_queries(queries: &[OwnedTargetPath]) -> Selection {
        let mut sel = Selection::Fields(BTreeMap::new());
        for q in queries.iter().filter(|q| q.prefix == PathPrefix::Event) {
            sel.add(&q.path.segments);
        }
        sel
    }

    /// Nothing selected yet.
    pub fn none() -> Selection {
        Selection::Fields(BTreeMap::new())
    }

    /// Also select what `path` reads (everything from its first index down).
    pub fn add_path(&mut self, path: &OwnedValuePath) {
        self.add(&path.segments);
    }

    /// Also select the whole value at a path of field names.
    pub fn add_fields(&mut self, path: &[String]) {
        let Selection::Fields(fields) = self else { return };
        match path.split_first() {
            Some((name, rest)) => {
                let child = fields.entry(name.clone()).or_insert_with(Selection::none);
                if rest.is_empty() {
                    *child = Selection::All;
                } else {
                    child.add_fields(rest);
                }
            }
            None => *self = Selection::All,
        }
    }

    /// Also select the objects on the way to a path of field names, without their
    /// other fields (converted empty: enough to see whether they exist).
    pub fn add_parents(&mut self, path: &[String]) {
        let Selection::Fields(fields) = self else { return };
        if let [name, rest @ ..] = path
            && !rest.is_empty()
        {
            fields
                .entry(name.clone())
                .or_insert_with(Selection::none)
                .add_parents(rest);
        }
    }

    fn add(&mut self, path: &[OwnedSegment]) {
        let Selection::Fields(fields) = self else { return };
        match path.split_first() {
            Some((OwnedSegment::Field(name), rest)) => {
                let child = fields
                    .entry(name.as_str().to_owned())
                    .or_insert_with(|| Selection::Fields(BTreeMap::new()));
                if rest.is_empty() {
                    *child = Selection::All;
                } else {
                    child.add(rest);
                }
            }
            // The root itself, or an array index: keep everything from here down.
            _ => *self = Selection::All,
        }
    }

    pub(crate) fn child(&self, key: &str) -> Option<&Selection> {
        match self {
            Selection::All => Some(&ALL),
            Selection::Fields(f) => f.get(key),
        }
    }
}

/// Why a value could not become a VRL value (only for types a record never contains).
#[derive(Debug, thiserror::Error)]
#[error("cannot convert to a VRL value: {0}")]
pub struct ConvertError(String);

impl ser::Error for ConvertError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        ConvertError(msg.to_string())
    }
}

/// Any `Serialize` value (a [`perisco_engine::event::Record`]) as a VRL value, limited to
/// `sel`. Fields outside the selection are not serialised at all.
pub fn to_vrl<T: Serialize + ?Sized>(value: &T, sel: &Selection) -> Result<Value, ConvertError> {
    value.serialize(ValueSerializer { sel })
}

/// A JSON value (a `Document`) as a VRL value, copying only what `sel` selects.
pub fn json_ref_to_vrl(v: &serde_json::Value, sel: &Selection) -> Value {
    use serde_json::Value as J;
    match v {
        J::Null => Value::Null,
        J::Bool(b) => Value::Boolean(*b),
        J::Number(n) => number_to_vrl(n),
        J::String(s) => Value::from(s.as_str()),
        J::Array(a) => Value::Array(a.iter().map(|v| json_ref_to_vrl(v, &ALL)).collect()),
        J::Object(m) => Value::Object(map_ref_to_vrl(m, sel)),
    }
}

/// The fields of a JSON object selected by `sel`, as a VRL object.
pub fn map_ref_to_vrl(m: &serde_json::Map<String, serde_json::Value>, sel: &Selection) -> ObjectMap {
    match sel {
        Selection::All => m
            .iter()
            .map(|(k, v)| (KeyString::from(k.as_str()), json_ref_to_vrl(v, &ALL)))
            .collect(),
        Selection::Fields(f) => f
            .iter()
            .filter_map(|(k, s)| m.get(k).map(|v| (KeyString::from(k.as_str()), json_ref_to_vrl(v, s))))
            .collect(),
    }
}

/// A JSON value as a VRL value, moving its strings instead of copying them.
pub fn json_to_vrl(v: serde_json::Value) -> Value {
    use serde_json::Value as J;
    match v {
        J::Null => Value::Null,
        J::Bool(b) => Value::Boolean(b),
        J::Number(n) => number_to_vrl(&n),
        J::String(s) => Value::from(s),
        J::Array(a) => Value::Array(a.into_iter().map(json_to_vrl).collect()),
        J::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| (KeyString::from(k), json_to_vrl(v)))
                .collect(),
        ),
    }
}

fn number_to_vrl(n: &serde_json::Number) -> Value {
    if let Some(i) = n.as_i64() {
        Value::Integer(i)
    } else {
        // u64 above i64::MAX, or a float: VRL has no wider integer.
        n.as_f64()
            .and_then(|f| NotNan::new(f).ok())
            .map_or(Value::Null, Value::Float)
    }
}

/// A VRL value as JSON. Never fails: bytes that are not UTF-8 are converted lossily,
/// timestamps become RFC 3339 strings (as VRL's own JSON encoding writes them).
pub fn vrl_to_json(v: Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Value::Null => J::Null,
        Value::Boolean(b) => J::Bool(b),
        Value::Integer(i) => J::from(i),
        Value::Float(f) => serde_json::Number::from_f64(f.into_inner()).map_or(J::Null, J::Number),
        Value::String(s) => J::String(s.to_string()),
        Value::Bytes(b) => J::String(bytes_to_string(b)),
        Value::Regex(r) => J::String(r.as_str().to_owned()),
        Value::Timestamp(t) => J::String(vrl::value::value::timestamp_to_string(&t)),
        Value::Array(a) => J::Array(a.into_iter().map(vrl_to_json).collect()),
        Value::Object(m) => J::Object(object_to_json(m)),
    }
}

/// A VRL value as JSON, by reference (as [`vrl_to_json`]).
pub fn vrl_ref_to_json(v: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Value::Null => J::Null,
        Value::Boolean(b) => J::Bool(*b),
        Value::Integer(i) => J::from(*i),
        Value::Float(f) => serde_json::Number::from_f64(f.into_inner()).map_or(J::Null, J::Number),
        Value::String(s) => J::String(s.to_string()),
        Value::Bytes(b) => J::String(String::from_utf8_lossy(b).into_owned()),
        Value::Regex(r) => J::String(r.as_str().to_owned()),
        Value::Timestamp(t) => J::String(vrl::value::value::timestamp_to_string(t)),
        Value::Array(a) => J::Array(a.iter().map(vrl_ref_to_json).collect()),
        Value::Object(m) => J::Object(
            m.iter()
                .map(|(k, v)| (k.as_str().to_owned(), vrl_ref_to_json(v)))
                .collect(),
        ),
    }
}

/// A VRL object as a JSON object (the body of an `Event::Document`).
pub fn object_to_json(m: ObjectMap) -> serde_json::Map<String, serde_json::Value> {
    m.into_iter().map(|(k, v)| (String::from(k), vrl_to_json(v))).collect()
}

fn bytes_to_string(b: Bytes) -> String {
    match String::from_utf8(Vec::from(b)) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

/// Builds a VRL value from serde's data model, the way serde_json would build JSON:
/// `None` → null, unit variants → their name, maps with string keys → objects.
struct ValueSerializer<'s> {
    sel: &'s Selection,
}

impl<'s> ser::Serializer for ValueSerializer<'s> {
    type Ok = Value;
    type Error = ConvertError;
    type SerializeSeq = SeqBuilder;
    type SerializeTuple = SeqBuilder;
    type SerializeTupleStruct = SeqBuilder;
    type SerializeTupleVariant = Variant<SeqBuilder>;
    type SerializeMap = MapBuilder<'s>;
    type SerializeStruct = MapBuilder<'s>;
    type SerializeStructVariant = Variant<MapBuilder<'s>>;

    fn serialize_bool(self, v: bool) -> Result<Value, ConvertError> {
        Ok(Value::Boolean(v))
    }
    fn serialize_i8(self, v: i8) -> Result<Value, ConvertError> {
        Ok(Value::Integer(v.into()))
    }
    fn serialize_i16(self, v: i16) -> Result<Value, ConvertError> {
        Ok(Value::Integer(v.into()))
    }
    fn serialize_i32(self, v: i32) -> Result<Value, ConvertError> {
        Ok(Value::Integer(v.into()))
    }
    fn serialize_i64(self, v: i64) -> Result<Value, ConvertError> {
        Ok(Value::Integer(v))
    }
    fn serialize_u8(self, v: u8) -> Result<Value, ConvertError> {
        Ok(Value::Integer(v.into()))
    }
    fn serialize_u16(self, v: u16) -> Result<Value, ConvertError> {
        Ok(Value::Integer(v.into()))
    }
    fn serialize_u32(self, v: u32) -> Result<Value, ConvertError> {
        Ok(Value::Integer(v.into()))
    }
    fn serialize_u64(self, v: u64) -> Result<Value, ConvertError> {
        Ok(match i64::try_from(v) {
            Ok(i) => Value::Integer(i),
            Err(_) => float(v as f64),
        })
    }
    fn serialize_f32(self, v: f32) -> Result<Value, ConvertError> {
        Ok(float(v.into()))
    }
    fn serialize_f64(self, v: f64) -> Result<Value, ConvertError> {
        Ok(float(v))
    }
    fn serialize_char(self, v: char) -> Result<Value, ConvertError> {
        Ok(Value::from(v.to_string()))
    }
    fn serialize_str(self, v: &str) -> Result<Value, ConvertError> {
        Ok(Value::from(v))
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<Value, ConvertError> {
        Ok(Value::Bytes(Bytes::copy_from_slice(v)))
    }
    fn serialize_none(self) -> Result<Value, ConvertError> {
        Ok(Value::Null)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<Value, ConvertError> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<Value, ConvertError> {
        Ok(Value::Null)
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<Value, ConvertError> {
        Ok(Value::Null)
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _i: u32,
        variant: &'static str,
    ) -> Result<Value, ConvertError> {
        Ok(Value::from(variant))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _n: &'static str, v: &T) -> Result<Value, ConvertError> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _i: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<Value, ConvertError> {
        let Some(sel) = self.sel.child(variant) else {
            return Ok(Value::Object(ObjectMap::new()));
        };
        let inner = value.serialize(ValueSerializer { sel })?;
        Ok(Value::Object(ObjectMap::from([(KeyString::from(variant), inner)])))
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<SeqBuilder, ConvertError> {
        Ok(SeqBuilder(Vec::with_capacity(len.unwrap_or(0))))
    }
    fn serialize_tuple(self, len: usize) -> Result<SeqBuilder, ConvertError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(self, _n: &'static str, len: usize) -> Result<SeqBuilder, ConvertError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _i: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Variant<SeqBuilder>, ConvertError> {
        Ok(Variant {
            name: variant,
            keep: self.sel.child(variant).is_some(),
            inner: self.serialize_seq(Some(len))?,
        })
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<MapBuilder<'s>, ConvertError> {
        Ok(MapBuilder {
            sel: self.sel,
            map: ObjectMap::new(),
            key: None,
        })
    }
    fn serialize_struct(self, _n: &'static str, _len: usize) -> Result<MapBuilder<'s>, ConvertError> {
        self.serialize_map(None)
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _i: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Variant<MapBuilder<'s>>, ConvertError> {
        let sel = self.sel.child(variant);
        Ok(Variant {
            name: variant,
            keep: sel.is_some(),
            inner: MapBuilder {
                sel: sel.unwrap_or(&ALL),
                map: ObjectMap::new(),
                key: None,
            },
        })
    }
}

fn float(f: f64) -> Value {
    // serde_json writes NaN and infinities as null.
    NotNan::new(f)
        .ok()
        .filter(|f| f.is_finite())
        .map_or(Value::Null, Value::Float)
}

struct SeqBuilder(Vec<Value>);

impl SeqBuilder {
    fn push<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), ConvertError> {
        // Paths into arrays select whole elements (see `Selection::add`).
        self.0.push(v.serialize(ValueSerializer { sel: &ALL })?);
        Ok(())
    }
}

impl ser::SerializeSeq for SeqBuilder {
    type Ok = Value;
    type Error = ConvertError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), ConvertError> {
        self.push(v)
    }
    fn end(self) -> Result<Value, ConvertError> {
        Ok(Value::Array(self.0))
    }
}

impl ser::SerializeTuple for SeqBuilder {
    type Ok = Value;
    type Error = ConvertError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), ConvertError> {
        self.push(v)
    }
    fn end(self) -> Result<Value, ConvertError> {
        Ok(Value::Array(self.0))
    }
}

impl ser::SerializeTupleStruct for SeqBuilder {
    type Ok = Value;
    type Error = ConvertError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), ConvertError> {
        self.push(v)
    }
    fn end(self) -> Result<Value, ConvertError> {
        Ok(Value::Array(self.0))
    }
}

struct MapBuilder<'s> {
    sel: &'s Selection,
    map: ObjectMap,
    /// Key of the entry being serialised, `None` after a key outside the selection.
    key: Option<(String, &'s Selection)>,
}

impl<'s> MapBuilder<'s> {
    fn field<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result<(), ConvertError> {
        if let Some(sel) = self.sel.child(key) {
            let v = value.serialize(ValueSerializer { sel })?;
            self.map.insert(KeyString::from(key), v);
        }
        Ok(())
    }
}

impl ser::SerializeMap for MapBuilder<'_> {
    type Ok = Value;
    type Error = ConvertError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), ConvertError> {
        let k = key.serialize(KeySerializer)?;
        self.key = self.sel.child(&k).map(|s| (k, s));
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ConvertError> {
        if let Some((k, sel)) = self.key.take() {
            let v = value.serialize(ValueSerializer { sel })?;
            self.map.insert(KeyString::from(k), v);
        }
        Ok(())
    }
    fn end(self) -> Result<Value, ConvertError> {
        Ok(Value::Object(self.map))
    }
}

impl ser::SerializeStruct for MapBuilder<'_> {
    type Ok = Value;
    type Error = ConvertError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<(), ConvertError> {
        self.field(key, value)
    }
    fn end(self) -> Result<Value, ConvertError> {
        Ok(Value::Object(self.map))
    }
}

/// `{"Variant": <inner>}`, as serde_json writes externally tagged enum variants.
struct Variant<B> {
    name: &'static str,
    keep: bool,
    inner: B,
}

impl<B> Variant<B> {
    fn wrap(self, inner: Value) -> Value {
        let mut m = ObjectMap::new();
        if self.keep {
            m.insert(KeyString::from(self.name), inner);
        }
        Value::Object(m)
    }
}

impl ser::SerializeTupleVariant for Variant<SeqBuilder> {
    type Ok = Value;
    type Error = ConvertError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), ConvertError> {
        self.inner.push(v)
    }
    fn end(mut self) -> Result<Value, ConvertError> {
        let inner = Value::Array(std::mem::take(&mut self.inner.0));
        Ok(self.wrap(inner))
    }
}

impl ser::SerializeStructVariant for Variant<MapBuilder<'_>> {
    type Ok = Value;
    type Error = ConvertError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<(), ConvertError> {
        self.inner.field(key, value)
    }
    fn end(mut self) -> Result<Value, ConvertError> {
        let inner = Value::Object(std::mem::take(&mut self.inner.map));
        Ok(self.wrap(inner))
    }
}

/// Map keys: strings, and (like serde_json) integers and chars written as strings.
struct KeySerializer;

macro_rules! key_via_to_string {
    ($($f:ident: $t:ty),*) => {$(
        fn $f(self, v: $t) -> Result<String, ConvertError> {
            Ok(v.to_string())
        }
    )*};
}

impl ser::Serializer for KeySerializer {
    type Ok = String;
    type Error = ConvertError;
    type SerializeSeq = Impossible<String, ConvertError>;
    type SerializeTuple = Impossible<String, ConvertError>;
    type SerializeTupleStruct = Impossible<String, ConvertError>;
    type SerializeTupleVariant = Impossible<String, ConvertError>;
    type SerializeMap = Impossible<String, ConvertError>;
    type SerializeStruct = Impossible<String, ConvertError>;
    type SerializeStructVariant = Impossible<String, ConvertError>;

    key_via_to_string!(
        serialize_bool: bool, serialize_i8: i8, serialize_i16: i16, serialize_i32: i32, serialize_i64: i64,
        serialize_u8: u8, serialize_u16: u16, serialize_u32: u32, serialize_u64: u64, serialize_char: char,
        serialize_str: &str
    );

    fn serialize_f32(self, _v: f32) -> Result<String, ConvertError> {
        Err(key_error())
    }
    fn serialize_f64(self, _v: f64) -> Result<String, ConvertError> {
        Err(key_error())
    }
    fn serialize_bytes(self, _v: &[u8]) -> Result<String, ConvertError> {
        Err(key_error())
    }
    fn serialize_none(self) -> Result<String, ConvertError> {
        Err(key_error())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _v: &T) -> Result<String, ConvertError> {
        Err(key_error())
    }
    fn serialize_unit(self) -> Result<String, ConvertError> {
        Err(key_error())
    }
    fn serialize_unit_struct(self, _n: &'static str) -> Result<String, ConvertError> {
        Err(key_error())
    }
    fn serialize_unit_variant(self, _n: &'static str, _i: u32, variant: &'static str) -> Result<String, ConvertError> {
        Ok(variant.to_owned())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _n: &'static str, v: &T) -> Result<String, ConvertError> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _n: &'static str,
        _i: u32,
        _variant: &'static str,
        _v: &T,
    ) -> Result<String, ConvertError> {
        Err(key_error())
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Self::SerializeSeq, ConvertError> {
        Err(key_error())
    }
    fn serialize_tuple(self, _len: usize) -> Result<Self::SerializeTuple, ConvertError> {
        Err(key_error())
    }
    fn serialize_tuple_struct(self, _n: &'static str, _len: usize) -> Result<Self::SerializeTupleStruct, ConvertError> {
        Err(key_error())
    }
    fn serialize_tuple_variant(
        self,
        _n: &'static str,
        _i: u32,
        _v: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleVariant, ConvertError> {
        Err(key_error())
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Self::SerializeMap, ConvertError> {
        Err(key_error())
    }
    fn serialize_struct(self, _n: &'static str, _len: usize) -> Result<Self::SerializeStruct, ConvertError> {
        Err(key_error())
    }
    fn serialize_struct_variant(
        self,
        _n: &'static str,
        _i: u32,
        _v: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStructVariant, ConvertError> {
        Err(key_error())
    }
}

fn key_error() -> ConvertError {
    ConvertError("map keys must be strings".into())
}
