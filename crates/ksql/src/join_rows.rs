//! A stream–table join's table rows, as one task holds them: in a local state store on
//! disk ([`crate::store`], a file of its own: `<task id>.join.redb`) with a bounded number
//! cached in memory, so the table may be far larger than memory and a restart reads only
//! the table's records past the positions the store covers.
//!
//! The layers are [`crate::groups`]' (changes not yet in the store, a two-generation
//! cache of clean rows, the store), with input positions in place of a changelog offset:
//! the table input is the join's changelog (Kafka Streams' source-topic changelog for a
//! table), so a flush records, with the rows, every table partition's committed position
//! they cover. Flushes run only between passes, once the pass's transaction is committed
//! (or while the state is rebuilt at start, with the positions replayed so far), so the
//! store never holds a change the log has not committed.
//!
//! A read or write that fails drops the store: the failure is taken by the task
//! ([`JoinRows::take_failure`]) before it commits the pass (whose lookups may have missed
//! rows), and the task rebuilds its table from the input, in memory from then on.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use strata_sql::join::{Stored, TableRows};

use crate::store::{StateStore, StoreError, StorePositions};

pub struct JoinRows {
    store: Option<StateStore>,
    dirty: BTreeMap<String, Option<Stored>>,
    hot: HashMap<String, Stored>,
    cold: HashMap<String, Stored>,
    capacity: usize,
    failure: Option<StoreError>,
}

/// The rows as the task and its join state share them.
pub type SharedRows = Arc<Mutex<JoinRows>>;

impl JoinRows {
    /// Rows in `store`, with at most about `capacity` clean ones cached.
    pub fn with_store(store: StateStore, capacity: usize) -> JoinRows {
        JoinRows {
            store: Some(store),
            dirty: BTreeMap::new(),
            hot: HashMap::new(),
            cold: HashMap::new(),
            capacity: capacity.max(2),
            failure: None,
        }
    }

    pub fn has_store(&self) -> bool {
        self.store.is_some()
    }

    /// How many changes wait for a flush.
    pub fn dirty_len(&self) -> usize {
        self.dirty.len()
    }

    /// Whether enough changes wait that they should be flushed now (memory is bounded by
    /// the cache's capacity).
    pub fn flush_due(&self) -> bool {
        self.store.is_some() && self.dirty.len() >= self.capacity
    }

    /// Rows cached in memory (changes and clean rows).
    pub fn cached_len(&self) -> usize {
        self.dirty.len() + self.hot.len() + self.cold.len()
    }

    /// Drops what is not in the store: changes (which a failed pass may have left
    /// uncommitted) and cached rows.
    pub fn reset(&mut self) {
        self.dirty.clear();
        self.hot.clear();
        self.cold.clear();
    }

    /// Where the store stands, None without a store or when it covers nothing.
    pub fn positions(&mut self) -> Option<StorePositions> {
        let store = self.store.as_ref()?;
        match store.positions() {
            Ok(p) => p,
            Err(e) => {
                self.fail(e);
                None
            }
        }
    }

    /// Empties the store, to be refilled from the table's start.
    pub fn clear(&mut self) {
        self.reset();
        if let Some(store) = &self.store {
            if let Err(e) = store.clear() {
                self.fail(e);
            }
        }
    }

    /// Writes the changes to the store as covering the table input below `positions`
    /// (call only when every change below them is committed and no other is held).
    pub fn flush(&mut self, positions: &BTreeMap<(String, i32), i64>, now_ms: i64) {
        let Some(store) = &self.store else {
            return;
        };
        let encoded: Vec<(&[u8], Option<Vec<u8>>)> = self
            .dirty
            .iter()
            .map(|(k, v)| (k.as_bytes(), v.as_ref().map(Stored::encode)))
            .collect();
        let written = store.apply_at(
            encoded.iter().map(|(k, v)| (*k, v.as_deref())),
            positions,
            now_ms,
        );
        drop(encoded);
        match written {
            Ok(()) => {
                for (k, v) in std::mem::take(&mut self.dirty) {
                    if let Some(row) = v {
                        self.cache(k, row);
                    }
                }
            }
            Err(e) => self.fail(e),
        }
    }

    /// A store failure, if one happened since the last call: the task must start over
    /// (the store is already dropped, so it starts over in memory).
    pub fn take_failure(&mut self) -> Option<StoreError> {
        self.failure.take()
    }

    fn fail(&mut self, e: StoreError) {
        tracing::warn!(error = %e, "SQL join store failed: the task rebuilds its table from the input, in memory");
        self.store = None;
        self.reset();
        self.failure.get_or_insert(e);
    }

    fn cache(&mut self, key: String, row: Stored) {
        if self.hot.len() >= self.capacity / 2 {
            self.cold = std::mem::take(&mut self.hot);
        }
        self.hot.insert(key, row);
    }

    fn get(&mut self, key: &str) -> Option<Stored> {
        if let Some(change) = self.dirty.get(key) {
            return change.clone();
        }
        if let Some(row) = self.hot.get(key) {
            return Some(row.clone());
        }
        if let Some(row) = self.cold.remove(key) {
            self.cache(key.to_string(), row.clone());
            return Some(row);
        }
        let store = self.store.as_ref()?;
        match store.get(key.as_bytes()) {
            Ok(None) => None,
            Ok(Some(bytes)) => match Stored::decode(&bytes) {
                Some(row) => {
                    self.cache(key.to_string(), row.clone());
                    Some(row)
                }
                None => {
                    let e = store.error(format!("row {key:?} does not decode"));
                    self.fail(e);
                    None
                }
            },
            Err(e) => {
                self.fail(e);
                None
            }
        }
    }

    fn set(&mut self, key: String, row: Option<Stored>) {
        self.hot.remove(&key);
        self.cold.remove(&key);
        self.dirty.insert(key, row);
    }
}

/// The join state's handle on the task's rows.
pub struct RowsHandle(pub SharedRows);

impl TableRows for RowsHandle {
    fn get(&mut self, key: &str) -> Option<Stored> {
        self.0.lock().expect("join rows lock").get(key)
    }

    fn insert(&mut self, key: String, row: Stored) {
        self.0.lock().expect("join rows lock").set(key, Some(row));
    }

    fn remove(&mut self, key: &str) {
        self.0
            .lock()
            .expect("join rows lock")
            .set(key.to_string(), None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_sql::ast::Statement;
    use strata_sql::catalog::Catalog;
    use strata_sql::join::{plan_join, JoinState};
    use strata_sql::pipeline::{RecordIn, Sink};
    use strata_sql::{format::Format, parse_statement};

    struct One;
    impl strata_sql::catalog::Topics for One {
        fn partitions(&self, _: &str) -> Option<i32> {
            Some(1)
        }
    }

    fn dir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("strata-joinrows-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    /// Table rows outgrow the cache and come back from the store; a reopened store with
    /// its positions answers as the rows were when flushed; uncommitted changes are
    /// dropped by a reset.
    #[test]
    fn rows_outgrow_the_cache_and_survive_a_reopen() {
        let mut c = Catalog::default();
        for s in [
            "CREATE STREAM L (A INT KEY, B INT) WITH (kafka_topic='l', value_format='JSON');",
            "CREATE TABLE T (A INT PRIMARY KEY, C INT) WITH (kafka_topic='t', value_format='JSON');",
        ] {
            c.create_source(&parse_statement(s).unwrap(), &One).unwrap();
        }
        let Statement::CreateAsSelect { query, .. } =
            parse_statement("CREATE STREAM O AS SELECT L.A, B, C FROM L LEFT JOIN T ON L.A = T.A;")
                .unwrap()
        else {
            panic!()
        };
        let sink = Sink {
            key_format: Format::Kafka,
            value_format: Format::Json,
            wrap_single_value: true,
            timestamp_column: None,
        };
        let q = plan_join(&query, &c, "O", sink).unwrap();
        let d = dir("reopen");
        let open = || {
            let s = StateStore::open(&d, &crate::store::join_store_name("T1")).unwrap();
            Arc::new(Mutex::new(JoinRows::with_store(s, 10)))
        };
        let input = |key: &'static [u8; 4], value: Option<&'static [u8]>| RecordIn {
            key: Some(key),
            value,
            timestamp: 1,
            partition: 0,
            offset: 0,
        };
        let keys: Vec<[u8; 4]> = (0..100i32).map(|i| i.to_be_bytes()).collect();
        let keys: &'static [[u8; 4]] = Box::leak(keys.into_boxed_slice());
        let values: Vec<Vec<u8>> = (0..100)
            .map(|i| format!(r#"{{"C":{i}}}"#).into_bytes())
            .collect();
        let values: &'static [Vec<u8>] = Box::leak(values.into_boxed_slice());
        let rows = open();
        let mut st = JoinState::with_table_rows(&q, Box::new(RowsHandle(rows.clone())));
        let fns = strata_sql::eval::NoFunctions;
        for i in 0..100 {
            q.process(1, input(&keys[i], Some(&values[i])), &mut st, &fns)
                .unwrap();
            let mut r = rows.lock().unwrap();
            if r.flush_due() {
                r.flush(&BTreeMap::from([(("t".to_string(), 0), i as i64 + 1)]), 1);
            }
        }
        rows.lock()
            .unwrap()
            .flush(&BTreeMap::from([(("t".to_string(), 0), 100)]), 2);
        assert!(
            rows.lock().unwrap().cached_len() <= 10,
            "the cache is bounded"
        );
        let lookup = |st: &mut JoinState, i: usize| {
            let out = q
                .process(0, input(&keys[i], Some(br#"{"B":0}"#)), st, &fns)
                .unwrap();
            String::from_utf8(out[0].value.clone().unwrap()).unwrap()
        };
        assert_eq!(
            lookup(&mut st, 3),
            r#"{"B":0,"C":3}"#,
            "read back from the store"
        );
        // Uncommitted: a deletion, then a reset (the pass failed).
        q.process(1, input(&keys[4], None), &mut st, &fns).unwrap();
        assert_eq!(lookup(&mut st, 4), r#"{"B":0,"C":null}"#);
        rows.lock().unwrap().reset();
        assert_eq!(lookup(&mut st, 4), r#"{"B":0,"C":4}"#);
        drop(st);
        drop(rows);
        let rows = open();
        let at = rows.lock().unwrap().positions().unwrap();
        assert_eq!(at.positions, BTreeMap::from([(("t".to_string(), 0), 100)]));
        let mut st = JoinState::with_table_rows(&q, Box::new(RowsHandle(rows.clone())));
        assert_eq!(lookup(&mut st, 99), r#"{"B":0,"C":99}"#);
        rows.lock().unwrap().clear();
        assert_eq!(rows.lock().unwrap().positions(), None);
        assert_eq!(lookup(&mut st, 99), r#"{"B":0,"C":null}"#);
        let _ = std::fs::remove_dir_all(&d);
    }
}
