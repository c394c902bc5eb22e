//! Structured request logs: one JSON object per line on stderr, for log collectors.

use serde_json::{Map, Value};

/// Write one log record (`ts` and `level` are added).
pub fn write(level: &str, fields: Map<String, Value>) {
    let mut record = Map::with_capacity(fields.len() + 2);
    record.insert(
        "ts".into(),
        Value::String(crate::record::timestamp(std::time::SystemTime::now())),
    );
    record.insert("level".into(), Value::String(level.into()));
    record.extend(fields);
    eprintln!("{}", Value::Object(record));
}
