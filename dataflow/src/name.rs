//! Interned device and metric ids: a [`Name`] is a small integer, `Copy`, hashed as one word,
//! so the hot path (dedupe, the registry join, slices) never clones or compares a String.
//! Names are resolved back to text only in the sinks.
//!
//! One table per process, shared by its workers; each thread keeps a copy of what it has
//! looked up, so a lookup takes no lock once a name is known. The table only grows: a name
//! stays for the life of the process (the fleet's ids and metrics are a few thousand). Ids
//! from readings are admitted up to [`NAME_LIMIT`] (see [`Name::admit`]), so a sender making
//! up new ids cannot grow it without bound. Across processes a name travels as its text.

use std::cell::RefCell;
use std::sync::{OnceLock, RwLock};

use differential_dataflow::Hashable;

use crate::FastMap;

/// How many distinct names readings may bring into one process (devices and metrics
/// together). Past it, a reading with a new id is stored raw but not windowed, and counted
/// (`ioc_dataflow_unnamed_readings_total`).
pub const NAME_LIMIT: usize = 1 << 20;

/// The worker a device's readings, registry entry and windows live on: differential's hash of
/// the id (a fixed-seed hash, the same in every process of a cluster), as the registry
/// arrangement routes it.
pub fn device_route(device_id: &str) -> u64 {
    device_id.hashed()
}

/// An interned device or metric id.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Name(u32);

#[derive(Default)]
struct Table {
    index: FastMap<&'static str, Name>,
    /// Each name's text and route, by number.
    names: Vec<(&'static str, u64)>,
}

/// This thread's copy of the part of the table it has used.
#[derive(Default)]
struct Local {
    index: FastMap<&'static str, Name>,
    names: Vec<(&'static str, u64)>,
}

fn table() -> &'static RwLock<Table> {
    static TABLE: OnceLock<RwLock<Table>> = OnceLock::new();
    TABLE.get_or_init(RwLock::default)
}

thread_local! {
    static LOCAL: RefCell<Local> = RefCell::default();
}

impl Name {
    /// The name of `text`, adding it to the table if new.
    pub fn of(text: &str) -> Name {
        Name::lookup(text, usize::MAX).expect("an unlimited table always admits")
    }

    /// The name of `text` from a reading: `None` when it is new and the table already holds
    /// [`NAME_LIMIT`] names.
    pub fn admit(text: &str) -> Option<Name> {
        Name::lookup(text, NAME_LIMIT)
    }

    fn lookup(text: &str, limit: usize) -> Option<Name> {
        if let Some(name) = LOCAL.with(|l| l.borrow().index.get(text).copied()) {
            return Some(name);
        }
        let known = table()
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .index
            .get(text)
            .copied();
        let name = match known {
            Some(name) => name,
            None => {
                let mut table = table().write().unwrap_or_else(|e| e.into_inner());
                match table.index.get(text) {
                    Some(name) => *name,
                    None => {
                        if table.names.len() >= limit {
                            return None;
                        }
                        let n = u32::try_from(table.names.len()).ok()?;
                        let text: &'static str = Box::leak(text.into());
                        table.names.push((text, device_route(text)));
                        table.index.insert(text, Name(n));
                        Name(n)
                    }
                }
            }
        };
        LOCAL.with(|l| {
            let mut l = l.borrow_mut();
            let text = l.entry(name).0;
            l.index.insert(text, name);
        });
        Some(name)
    }

    /// Its text.
    pub fn as_str(self) -> &'static str {
        LOCAL.with(|l| l.borrow_mut().entry(self).0)
    }

    /// The worker its readings, registry entry and windows live on, as
    /// [`device_route`] of its text.
    pub fn route(self) -> u64 {
        LOCAL.with(|l| l.borrow_mut().entry(self).1)
    }
}

impl Local {
    fn entry(&mut self, name: Name) -> (&'static str, u64) {
        let n = name.0 as usize;
        if n >= self.names.len() {
            let table = table().read().unwrap_or_else(|e| e.into_inner());
            let have = self.names.len();
            self.names.extend_from_slice(&table.names[have..]);
        }
        self.names[n]
    }
}

impl PartialOrd for Name {
    fn partial_cmp(&self, other: &Name) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Names order as their texts do, so orders do not depend on which came first.
impl Ord for Name {
    fn cmp(&self, other: &Name) -> std::cmp::Ordering {
        if self == other {
            return std::cmp::Ordering::Equal;
        }
        self.as_str().cmp(other.as_str())
    }
}

impl PartialEq<str> for Name {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Name {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl std::fmt::Debug for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&str> for Name {
    fn from(text: &str) -> Name {
        Name::of(text)
    }
}

/// A name crosses processes as its text: numbers differ between processes.
impl serde::Serialize for Name {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Name {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Name, D::Error> {
        struct Text;
        impl serde::de::Visitor<'_> for Text {
            type Value = Name;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a device or metric id")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Name, E> {
                Ok(Name::of(text))
            }
        }
        deserializer.deserialize_str(Text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_its_text_in_every_thread() {
        let a = Name::of("name-test-device-1");
        assert_eq!(a, Name::of("name-test-device-1"));
        assert_eq!(a.as_str(), "name-test-device-1");
        assert_eq!(a.route(), device_route("name-test-device-1"));
        let (same, text) =
            std::thread::spawn(move || (Name::of("name-test-device-1"), a.as_str().to_owned()))
                .join()
                .unwrap();
        assert_eq!(same, a);
        assert_eq!(text, "name-test-device-1");
        // A name made in another thread resolves here.
        let b = std::thread::spawn(|| Name::of("name-test-device-2"))
            .join()
            .unwrap();
        assert_eq!(b.as_str(), "name-test-device-2");
        assert!(a < b, "names order as their texts");
    }

    #[test]
    fn names_cross_processes_as_text() {
        let a = Name::of("name-test-metric");
        let bytes = bincode::serialize(&a).unwrap();
        assert_eq!(bincode::deserialize::<Name>(&bytes).unwrap(), a);
        assert_eq!(
            bincode::deserialize::<String>(&bytes).unwrap(),
            "name-test-metric"
        );
    }

    #[test]
    fn devices_route_as_the_registry_arrangement_does() {
        // The arrangement exchanges by the key's fixed-seed hash; readings must go the same way.
        assert_eq!(device_route("a"), "a".to_owned().hashed());
        assert_eq!(device_route("a"), 15_567_111_018_434_449_279);
        assert_ne!(
            device_route("tsc-hai_chau-001"),
            device_route("tsc-hai_chau-002")
        );
    }
}
