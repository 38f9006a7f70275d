//! An in-memory store, for fast scenario tests of the commit protocol.

use std::collections::BTreeMap;

use parking_lot::RwLock;

use super::{PutOutcome, Store, StoreError};
use crate::id::{validate_key, validate_prefix};

/// A store in a `BTreeMap`; it keeps the full contract of [`Store`] except
/// durability across processes.
#[derive(Debug, Default)]
pub struct MemStore {
    objects: RwLock<BTreeMap<String, Vec<u8>>>,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the bytes of an existing object, bypassing write-once: tests use
    /// it to corrupt objects.
    pub fn tamper(&self, key: &str, f: impl FnOnce(&mut Vec<u8>)) -> bool {
        match self.objects.write().get_mut(key) {
            Some(v) => {
                f(v);
                true
            }
            None => false,
        }
    }

    /// Number of objects stored.
    pub fn len(&self) -> usize {
        self.objects.read().len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.objects.read().is_empty()
    }
}

impl Store for MemStore {
    fn put_if_absent(&self, key: &str, value: &[u8]) -> Result<PutOutcome, StoreError> {
        validate_key(key)?;
        let mut map = self.objects.write();
        if map.contains_key(key) {
            return Ok(PutOutcome::AlreadyExists);
        }
        map.insert(key.to_owned(), value.to_vec());
        Ok(PutOutcome::Created)
    }

    fn put(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        validate_key(key)?;
        self.objects.write().insert(key.to_owned(), value.to_vec());
        Ok(())
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        validate_key(key)?;
        Ok(self.objects.read().get(key).cloned())
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        validate_prefix(prefix)?;
        let map = self.objects.read();
        Ok(map
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, _)| k.clone())
            .collect())
    }

    fn list_dir(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        validate_prefix(prefix)?;
        let mut out: Vec<String> = Vec::new();
        for k in self.list(prefix)? {
            let rest = &k[prefix.len()..];
            let name = match rest.find('/') {
                Some(i) => &rest[..=i],
                None => rest,
            };
            if out.last().map(String::as_str) != Some(name) {
                out.push(name.to_owned());
            }
        }
        Ok(out)
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        validate_key(key)?;
        self.objects.write().remove(key);
        Ok(())
    }

    fn describe(&self) -> String {
        "memory".to_owned()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn memory_store_passes_conformance() {
        let s = super::MemStore::new();
        if let Err(e) = super::super::conformance::run_all(&s) {
            panic!("{e}");
        }
    }
}
