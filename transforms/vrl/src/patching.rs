//! Between VRL values and [`Patch`]es: the view of a patched record a program runs on,
//! and the changes read back from what it left.

use perisco_engine::event::{Change, Patch, PatchedRecord};
use vrl::value::{KeyString, ObjectMap, Value};

use crate::convert::{self, ConvertError, Selection};

/// A patched record as a VRL object, limited to `sel`: the record's selected fields with
/// the patch applied on top (what an earlier remap left is what this program sees).
pub fn patched_to_vrl(p: &PatchedRecord, sel: &Selection) -> Result<Value, ConvertError> {
    let mut value = convert::to_vrl(&p.record, sel)?;
    if let Value::Object(m) = &mut value {
        apply(m, &p.patch, sel);
    }
    Ok(value)
}

/// Apply `patch` to a VRL object, only where `sel` selects (the rest is not converted).
pub fn apply(map: &mut ObjectMap, patch: &Patch, sel: &Selection) {
    for (key, change) in patch.iter() {
        let Some(child) = sel.child(key) else { continue };
        match change {
            Change::Set(v) => {
                map.insert(KeyString::from(key), convert::json_ref_to_vrl(v, child));
            }
            Change::Delete => {
                map.remove(key);
            }
            Change::Fields(p) => {
                let slot = map
                    .entry(KeyString::from(key))
                    .or_insert_with(|| Value::Object(ObjectMap::new()));
                if !matches!(slot, Value::Object(_)) {
                    *slot = Value::Object(ObjectMap::new());
                }
                if let Value::Object(m) = slot {
                    apply(m, p, child);
                }
            }
        }
    }
}

/// Record into `patch` the final state of each path in `paths` (outermost touched
/// paths) in `root`, the event as the program left it.
///
/// Walking down a path in the final event:
/// - the value is there: it is set to that value;
/// - a field on the way is missing from its (object) parent: that field is deleted;
/// - a value on the way is not an object: that value is set as it is (nothing below it
///   can exist).
///
/// Each change is exactly what the final event holds at that point, so applying them in
/// any order to the record gives the final event at every path the program could change.
/// A deletion is only recorded inside an object that exists, so it never creates one.
pub fn record_changes<'p>(root: &ObjectMap, paths: impl Iterator<Item = &'p Vec<String>>, patch: &mut Patch) {
    let mut keys: Vec<&str> = Vec::new();
    for path in paths {
        keys.clear();
        let mut map = root;
        let mut change = None;
        for (i, key) in path.iter().enumerate() {
            keys.push(key);
            match map.get(key.as_str()) {
                None => {
                    change = Some(Change::Delete);
                    break;
                }
                Some(v) if i + 1 == path.len() => {
                    change = Some(Change::Set(convert::vrl_ref_to_json(v)));
                }
                Some(Value::Object(m)) => map = m,
                Some(other) => {
                    change = Some(Change::Set(convert::vrl_ref_to_json(other)));
                    break;
                }
            }
        }
        if let Some(c) = change {
            patch.insert(&keys, c);
        }
    }
}
