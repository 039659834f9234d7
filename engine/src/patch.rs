//! Changes to a typed record, kept beside it instead of converting the record to JSON.
//!
//! A VRL `remap` usually touches a few fields (`.cluster = "prod"`,
//! `del(.l7.request.http.headers)`). Turning the whole record into a JSON object for that
//! costs far more than the program itself, so `remap` emits the typed record plus a
//! [`Patch`]: a tree that follows the record's JSON objects and says, per field, "set to
//! this value", "delete" or "changes further down". Sinks write the record with the patch
//! applied; the JSON is exactly what the patched object would serialise to.

use serde_json::{Map, Value};

use crate::record::{Record, Text};

/// A record and the changes a program made to it: [`crate::event::Event::Patched`].
#[derive(Debug, Clone, PartialEq)]
pub struct PatchedRecord {
    pub record: Record,
    pub patch: Patch,
}

impl PatchedRecord {
    /// The patched record as a JSON object.
    pub fn to_json_map(&self) -> Result<Map<String, Value>, serde_json::Error> {
        let mut map = match serde_json::to_value(&self.record)? {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        self.patch.apply(&mut map);
        Ok(map)
    }
}

/// Changes to the fields of one JSON object, in the order they were recorded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Patch {
    /// Keys are compact strings: field names are short, so recording a change allocates
    /// nothing per key.
    fields: Vec<(Text, Change)>,
}

/// What happens to one field.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// The field becomes this value (added when the object has no such field).
    Set(Value),
    /// The field is removed.
    Delete,
    /// Changes inside the field. When the field is absent or not an object, it becomes an
    /// object holding only what these changes set (as a VRL assignment into a scalar does).
    Fields(Patch),
}

impl Patch {
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// The change of one field, if any.
    pub fn get(&self, key: &str) -> Option<&Change> {
        self.fields.iter().find(|(k, _)| k == key).map(|(_, c)| c)
    }

    /// Every changed field, in recording order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Change)> {
        self.fields.iter().map(|(k, c)| (k.as_str(), c))
    }

    /// Record `change` at `path` (field names from this object down). A change at a path
    /// replaces every change recorded at or below it; a change below a path already `Set`
    /// or deleted edits that value instead. An empty path is ignored: replacing the whole
    /// record is not a patch.
    pub fn insert(&mut self, path: &[&str], change: Change) {
        let Some((first, rest)) = path.split_first() else {
            return;
        };
        let i = match self.fields.iter().position(|(k, _)| k == first) {
            Some(i) => i,
            None => {
                self.fields.push((Text::from(*first), Change::Fields(Patch::default())));
                self.fields.len() - 1
            }
        };
        let slot = &mut self.fields[i].1;
        if rest.is_empty() {
            *slot = change;
            return;
        }
        match slot {
            Change::Fields(p) => p.insert(rest, change),
            Change::Set(v) => set_path(v, rest, change),
            Change::Delete => {
                let mut v = Value::Object(Map::new());
                set_path(&mut v, rest, change);
                *slot = Change::Set(v);
            }
        }
    }

    /// Apply the changes to a JSON object.
    pub fn apply(&self, map: &mut Map<String, Value>) {
        for (key, change) in &self.fields {
            match change {
                Change::Set(v) => {
                    map.insert(key.to_string(), v.clone());
                }
                Change::Delete => {
                    map.remove(key.as_str());
                }
                Change::Fields(p) => {
                    let slot = map.entry(key.as_str()).or_insert_with(|| Value::Object(Map::new()));
                    if !slot.is_object() {
                        *slot = Value::Object(Map::new());
                    }
                    if let Value::Object(m) = slot {
                        p.apply(m);
                    }
                }
            }
        }
    }
}

/// Apply `change` at `path` inside a JSON value (creating objects on the way).
fn set_path(v: &mut Value, path: &[&str], change: Change) {
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    let Value::Object(map) = v else { return };
    let mut p = Patch::default();
    p.insert(path, change);
    p.apply(map);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn applies_sets_deletes_and_nested_changes() {
        let mut p = Patch::default();
        p.insert(&["cluster"], Change::Set(json!("prod")));
        p.insert(&["l7", "request", "http", "headers"], Change::Delete);
        p.insert(&["l7", "request", "http", "method"], Change::Set(json!("get")));
        p.insert(&["pid", "x"], Change::Set(json!(1)));
        let mut m = obj(json!({
            "pid": 7,
            "l7": {"request": {"http": {"method": "GET", "url": "/", "headers": []}}}
        }));
        p.apply(&mut m);
        assert_eq!(
            Value::Object(m),
            json!({
                "pid": {"x": 1},
                "l7": {"request": {"http": {"method": "get", "url": "/"}}},
                "cluster": "prod"
            })
        );
    }

    #[test]
    fn a_later_change_above_replaces_changes_below() {
        let mut p = Patch::default();
        p.insert(&["l7", "request", "http", "method"], Change::Set(json!("get")));
        p.insert(&["l7", "request"], Change::Delete);
        assert_eq!(
            p.get("l7"),
            Some(&Change::Fields(obj_patch(&[("request", Change::Delete)])))
        );
    }

    #[test]
    fn a_change_below_a_set_value_edits_it() {
        let mut p = Patch::default();
        p.insert(&["labels"], Change::Set(json!({"a": 1})));
        p.insert(&["labels", "b"], Change::Set(json!(2)));
        p.insert(&["gone"], Change::Delete);
        p.insert(&["gone", "c"], Change::Set(json!(3)));
        assert_eq!(p.get("labels"), Some(&Change::Set(json!({"a": 1, "b": 2}))));
        assert_eq!(p.get("gone"), Some(&Change::Set(json!({"c": 3}))));
    }

    fn obj_patch(fields: &[(&str, Change)]) -> Patch {
        let mut p = Patch::default();
        for (k, c) in fields {
            p.insert(&[k], c.clone());
        }
        p
    }
}
