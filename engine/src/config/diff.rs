//! What a reload changes: components to add, rebuild, reconfigure in place, or remove.

use std::sync::Arc;

use super::Config;
use crate::component::{Components, SourceConfig};

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Diff {
    pub to_add: Vec<Arc<str>>,
    pub to_change: Vec<Arc<str>>,
    pub to_remove: Vec<Arc<str>>,
    /// Changed, but the running instance takes the new config in place.
    pub to_reconfigure: Vec<Arc<str>>,
}

impl Diff {
    pub fn is_empty(&self) -> bool {
        self.to_add.is_empty()
            && self.to_change.is_empty()
            && self.to_remove.is_empty()
            && self.to_reconfigure.is_empty()
    }

    fn of<T>(
        old: &indexmap::IndexMap<Arc<str>, T>,
        new: &indexmap::IndexMap<Arc<str>, T>,
        same: impl Fn(&T, &T) -> bool,
        in_place: impl Fn(&T, &T) -> bool,
    ) -> Diff {
        let mut d = Diff::default();
        for (id, n) in new {
            match old.get(id) {
                None => d.to_add.push(id.clone()),
                Some(o) if same(o, n) => {}
                Some(o) if in_place(o, n) => d.to_reconfigure.push(id.clone()),
                Some(_) => d.to_change.push(id.clone()),
            }
        }
        d.to_remove = old.keys().filter(|k| !new.contains_key(*k)).cloned().collect();
        d
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ConfigDiff {
    pub sources: Diff,
    pub transforms: Diff,
    pub sinks: Diff,
    pub api_changed: bool,
}

impl ConfigDiff {
    pub fn new<C: Components>(old: &Config<C>, new: &Config<C>) -> Self {
        ConfigDiff {
            sources: Diff::of(&old.sources, &new.sources, |a, b| a == b, |a, b| a.can_reconfigure(b)),
            transforms: Diff::of(&old.transforms, &new.transforms, |a, b| a == b, |_, _| false),
            sinks: Diff::of(&old.sinks, &new.sinks, |a, b| a == b, |_, _| false),
            api_changed: old.api != new.api,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.sources.is_empty() && self.transforms.is_empty() && self.sinks.is_empty() && !self.api_changed
    }
}
