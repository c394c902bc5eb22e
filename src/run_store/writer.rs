//! Writing a run as it goes: one thread owns the files and appends each finished line (node
//! artifacts, the journal, outputs, inputs) with one `write` per record. Then `finalize` rewrites
//! the outputs in line order and writes `metrics.json`, `error.json` and `meta.json`.

use crate::image::MessageFormat;
use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;

use serde::Serialize;
use serde_json::{Map, Value, json};
use tokio::sync::Semaphore;

use super::meta::{Latency, RunMeta, RunStatus};
use super::records::{LineRecord, NodeRecord};
use super::{RunDir, read_journal};
use crate::record::{AggregationResult, LineResult, NodeRun, Status, Tokens, timestamp};

enum Message {
    /// Lines to write, and the backlog permits they hold (given back once written).
    Lines(Vec<LineResult>, usize),
    Aggregation(Box<AggregationResult>),
}

/// Finished lines queued for the writer before [`RunWriter::lines`] waits. With a fast
/// endpoint and a slow disk the batch then waits for the writer, instead of holding every
/// finished line in memory: memory stays flat whatever the dataset's size.
const BACKLOG: usize = 256;

/// The run directory's writer thread.
pub struct RunWriter {
    tx: Option<mpsc::Sender<Message>>,
    handle: Option<JoinHandle<io::Result<()>>>,
    backlog: Arc<Semaphore>,
}

impl RunWriter {
    /// Create the run's folders and start the writer thread. Images are referred to in the
    /// flow's `format`.
    pub fn start(dir: &RunDir, format: MessageFormat) -> io::Result<RunWriter> {
        for d in [
            dir.path.join("flow_outputs"),
            dir.node_artifacts_dir(),
            dir.flow_artifacts_dir(),
        ] {
            std::fs::create_dir_all(&d)?;
        }
        let (tx, rx) = mpsc::channel::<Message>();
        let dir = dir.clone();
        let backlog = Arc::new(Semaphore::new(BACKLOG));
        let released = backlog.clone();
        let handle = std::thread::Builder::new()
            .name("flow-run-writer".into())
            .spawn(move || {
                let written = write_all(dir, rx, &released, format);
                // Nobody waits for room any more once the writer stopped (an error).
                released.close();
                written
            })?;
        Ok(RunWriter {
            tx: Some(tx),
            handle: Some(handle),
            backlog,
        })
    }

    /// Queue a finished line. Never blocks.
    pub fn line(&self, line: LineResult) -> io::Result<()> {
        self.send(Message::Lines(vec![line], 0))
    }

    /// Queue finished lines, written in this order, with one wake-up of the writer thread for
    /// all of them. Waits while the writer already has [`BACKLOG`] lines to write.
    pub async fn lines(&self, lines: Vec<LineResult>) -> io::Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let held = lines.len().min(BACKLOG);
        // An error means the writer stopped (the semaphore is closed): sending reports it.
        if let Ok(permits) = self.backlog.acquire_many(held as u32).await {
            permits.forget();
        }
        self.send(Message::Lines(lines, held))
    }

    /// Queue the aggregation nodes' records.
    pub fn aggregation(&self, agg: AggregationResult) -> io::Result<()> {
        self.send(Message::Aggregation(Box::new(agg)))
    }

    fn send(&self, m: Message) -> io::Result<()> {
        match &self.tx {
            Some(tx) => tx
                .send(m)
                .map_err(|_| io::Error::other("the run writer stopped (see the error above)")),
            None => Err(io::Error::other("the run writer is closed")),
        }
    }

    /// Wait until everything queued is written.
    pub fn finish(mut self) -> io::Result<()> {
        self.tx.take();
        match self.handle.take() {
            Some(h) => h
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the run writer panicked"))),
            None => Ok(()),
        }
    }
}

impl Drop for RunWriter {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// The writer thread's loop: write every message until the channel closes, giving back the
/// backlog permits of each batch once it is written.
fn write_all(
    dir: RunDir,
    rx: mpsc::Receiver<Message>,
    backlog: &Semaphore,
    format: MessageFormat,
) -> io::Result<()> {
    let mut state = WriterState::new(dir, format)?;
    for message in rx {
        match message {
            Message::Lines(lines, held) => {
                for line in lines {
                    state.line(line)?;
                }
                backlog.add_permits(held);
            }
            Message::Aggregation(agg) => state.aggregation(&agg)?,
        }
    }
    state.flush()
}

struct WriterState {
    dir: RunDir,
    /// How the records refer to images.
    format: MessageFormat,
    /// The run's name, as every journal record carries it.
    run_name: String,
    node_dirs: HashSet<String>,
    journals: HashMap<PathBuf, File>,
    outputs: File,
    inputs: File,
    buf: Vec<u8>,
}

/// Open a JSON-lines file for appending. A file whose last record was torn (a process killed
/// mid-write) first gets the newline it lacks, so the torn record stays one unreadable line
/// that readers skip, and the records appended now stay readable.
fn append(path: &Path) -> io::Result<File> {
    let mut file = OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(path)?;
    let len = file.metadata()?.len();
    if len > 0 {
        use std::io::{Read, Seek, SeekFrom};
        let mut last = [0u8; 1];
        file.seek(SeekFrom::Start(len - 1))?;
        file.read_exact(&mut last)?;
        if last[0] != b'\n' {
            file.write_all(b"\n")?;
        }
    }
    Ok(file)
}

impl WriterState {
    fn new(dir: RunDir, format: MessageFormat) -> io::Result<Self> {
        Ok(WriterState {
            format,
            outputs: append(&dir.output_file())?,
            inputs: append(&dir.inputs_file())?,
            run_name: dir.name(),
            dir,
            node_dirs: HashSet::new(),
            journals: HashMap::new(),
            buf: Vec::with_capacity(4096),
        })
    }

    /// Write `value` as one JSON line with a single `write` call.
    fn write_line(
        buf: &mut Vec<u8>,
        file: &mut File,
        value: &impl serde::Serialize,
    ) -> io::Result<()> {
        buf.clear();
        serde_json::to_writer(&mut *buf, value).map_err(io::Error::other)?;
        crate::non_finite::restore(buf, 0);
        buf.push(b'\n');
        file.write_all(buf)
    }

    fn node_record(&mut self, node: &NodeRun, line_number: usize) -> io::Result<()> {
        if !self.node_dirs.contains(&node.node) {
            std::fs::create_dir_all(self.dir.node_artifacts_dir().join(&node.node))?;
            self.node_dirs.insert(node.node.clone());
        }
        let mut file = File::create(self.dir.node_artifact(&node.node, line_number))?;
        Self::write_line(
            &mut self.buf,
            &mut file,
            &NodeRecord::new(node, line_number),
        )
    }

    /// Append a finished line: its node records, its journal record, its inputs and (when it
    /// succeeded) its outputs. Records borrow from the line: nothing is copied to write it.
    fn line(&mut self, mut line: LineResult) -> io::Result<()> {
        // Images go to files next to the outputs; the records refer to them.
        crate::record::persist_images(
            &mut line,
            &self.dir.path.join("flow_outputs"),
            "images",
            self.format,
        )?;
        let nodes = std::mem::take(&mut line.nodes);
        for node in &nodes {
            self.node_record(node, line.line_number)?;
        }
        let path = self.dir.flow_artifact(line.line_number);
        if !self.journals.contains_key(&path) {
            if self.journals.len() >= 64 {
                self.journals.clear();
            }
            self.journals.insert(path.clone(), append(&path)?);
        }
        // The journal's run_info is the line without its node runs (they are in node_artifacts).
        let record = LineRecord::new(&line, &self.run_name);
        if let Some(file) = self.journals.get_mut(&path) {
            Self::write_line(&mut self.buf, file, &record)?;
        }
        Self::write_line(
            &mut self.buf,
            &mut self.inputs,
            &Numbered::new(line.line_number, &line.inputs),
        )?;
        if line.status == Status::Completed {
            Self::write_line(
                &mut self.buf,
                &mut self.outputs,
                &Numbered::new(line.line_number, &line.outputs),
            )?;
        }
        Ok(())
    }

    fn aggregation(&mut self, agg: &AggregationResult) -> io::Result<()> {
        let mut nodes = agg.nodes.clone();
        crate::record::persist_nodes(
            &mut nodes,
            &self.dir.path.join("flow_outputs"),
            "images",
            self.format,
        )?;
        for node in &nodes {
            self.node_record(node, 0)?;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.outputs.flush()?;
        self.inputs.flush()
    }
}

/// `{"line_number": N, ...values}`, serialized from borrowed values. A value named
/// `line_number` itself replaces the number in place, as inserting into a JSON object would.
struct Numbered<'a> {
    line_number: usize,
    values: &'a Map<String, Value>,
}

impl<'a> Numbered<'a> {
    fn new(line_number: usize, values: &'a Map<String, Value>) -> Self {
        Numbered {
            line_number,
            values,
        }
    }
}

impl Serialize for Numbered<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let own = self.values.get("line_number");
        let extra = usize::from(own.is_none());
        let mut map = serializer.serialize_map(Some(self.values.len() + extra))?;
        match own {
            Some(v) => map.serialize_entry("line_number", v)?,
            None => map.serialize_entry("line_number", &self.line_number)?,
        }
        for (k, v) in self.values {
            if k != "line_number" {
                map.serialize_entry(k, v)?;
            }
        }
        map.end()
    }
}

/// How many failed lines `error.json` describes in full.
const ERRORS_KEPT: usize = 100;

/// Rewrite outputs and inputs in line order from the journal, and write `metrics.json`,
/// `error.json` (or remove it when nothing failed) and `meta.json`. `meta` is updated with the
/// counts, tokens, cost and latency; its status becomes Completed or Failed unless `canceled`.
pub fn finalize(
    dir: &RunDir,
    meta: &mut RunMeta,
    user_metrics: &Map<String, Value>,
    canceled: bool,
) -> io::Result<()> {
    let journal = read_journal(dir)?;
    let out_tmp = dir.output_file().with_extension("jsonl.tmp");
    let in_tmp = dir.inputs_file().with_extension("jsonl.tmp");
    let mut outputs = io::BufWriter::new(File::create(&out_tmp)?);
    let mut inputs = io::BufWriter::new(File::create(&in_tmp)?);
    let mut durations = Vec::with_capacity(journal.entries.len());
    let mut tokens = Tokens::default();
    let mut cost = 0.0f64;
    meta.unpriced_models.clear();
    let mut cache_hits = 0u64;
    let mut saved = 0.0f64;
    let mut completed = 0usize;
    let mut failed = 0usize;
    let mut errors: Vec<Value> = Vec::new();
    journal.for_each(|line| {
        durations.push(line.duration_ms);
        tokens.add(&line.tokens);
        cost += line.cost_usd;
        cache_hits += u64::from(line.cache_hits);
        saved += line.saved_usd;
        for m in line.unpriced_models {
            if !meta.unpriced_models.contains(&m) {
                meta.unpriced_models.push(m);
            }
        }
        let text = crate::non_finite::to_string(&Numbered::new(line.line_number, &line.inputs))
            .map_err(io::Error::other)?;
        inputs.write_all(text.as_bytes())?;
        inputs.write_all(b"\n")?;
        if line.status == Status::Completed {
            completed += 1;
            let text =
                crate::non_finite::to_string(&Numbered::new(line.line_number, &line.outputs))
                    .map_err(io::Error::other)?;
            outputs.write_all(text.as_bytes())?;
            outputs.write_all(b"\n")?;
        } else {
            failed += 1;
            if errors.len() < ERRORS_KEPT {
                errors.push(json!({"line_number": line.line_number, "error": line.error}));
            }
        }
        Ok(())
    })?;
    outputs
        .into_inner()
        .map_err(|e| e.into_error())?
        .sync_all()?;
    inputs
        .into_inner()
        .map_err(|e| e.into_error())?
        .sync_all()?;
    std::fs::rename(&out_tmp, dir.output_file())?;
    std::fs::rename(&in_tmp, dir.inputs_file())?;

    meta.completed_lines = completed;
    meta.failed_lines = failed;
    if !canceled {
        meta.total_lines = meta.total_lines.max(completed + failed);
    }
    meta.tokens = tokens;
    meta.cost_usd = if meta.unpriced_models.is_empty() {
        Some((cost * 1e6).round() / 1e6)
    } else {
        None
    };
    meta.cache_hits = cache_hits;
    meta.saved_usd = (saved * 1e6).round() / 1e6;
    meta.latency_ms = Latency::of(&mut durations);
    meta.end_time = Some(timestamp(std::time::SystemTime::now()));
    meta.status = if canceled {
        RunStatus::Canceled
    } else if failed > 0 || completed < meta.total_lines {
        RunStatus::Failed
    } else {
        RunStatus::Completed
    };

    let mut metrics = user_metrics.clone();
    let builtin = [
        ("flow.lines_completed", json!(completed)),
        ("flow.lines_failed", json!(failed)),
        ("flow.success_rate", json!(meta.success_rate())),
        ("flow.total_tokens", json!(tokens.total_tokens)),
        ("flow.latency_p50_ms", json!(meta.latency_ms.p50)),
        ("flow.latency_p95_ms", json!(meta.latency_ms.p95)),
    ];
    for (k, v) in builtin {
        metrics.insert(k.to_string(), v);
    }
    if let Some(c) = meta.cost_usd {
        metrics.insert("flow.cost_usd".into(), json!(c));
    }
    crate::record::write_json_atomic(&dir.metrics_file(), &Value::Object(metrics))?;
    if failed > 0 {
        let doc = json!({
            "message": format!("{failed} of {} lines failed", completed + failed),
            "failed_lines": failed,
            "total_lines": completed + failed,
            "errors": errors,
        });
        crate::record::write_json_atomic(&dir.error_file(), &doc)?;
    } else if dir.error_file().exists() {
        std::fs::remove_file(dir.error_file())?;
    }
    write_meta(dir, meta)
}

/// Write `meta.json` atomically.
pub fn write_meta(dir: &RunDir, meta: &RunMeta) -> io::Result<()> {
    let value = serde_json::to_value(meta).map_err(io::Error::other)?;
    crate::record::write_json_atomic(&dir.meta_file(), &value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_writer_stopped_by_an_error_never_holds_the_batch_waiting_for_room() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path().join("run"));
        let writer = RunWriter::start(&run, MessageFormat::Basic).unwrap();
        // The journal's folder becomes a file: the writer's first line fails.
        std::fs::remove_dir_all(run.flow_artifacts_dir()).unwrap();
        std::fs::write(run.flow_artifacts_dir(), "not a folder").unwrap();
        let line = |n| LineResult {
            line_number: n,
            status: Status::Completed,
            inputs: Map::new(),
            outputs: Map::new(),
            error: None,
            nodes: Vec::new(),
            start_time: String::new(),
            end_time: String::new(),
            duration_ms: 0.0,
            tokens: Tokens::default(),
            cost_usd: 0.0,
            saved_usd: 0.0,
            cache_hits: 0,
            unpriced_models: Vec::new(),
        };
        let feed = async {
            for n in 0..3 * BACKLOG {
                writer.lines(vec![line(2 * n), line(2 * n + 1)]).await?;
            }
            Ok::<(), io::Error>(())
        };
        let fed = tokio::time::timeout(std::time::Duration::from_secs(20), feed).await;
        assert!(matches!(fed, Ok(Err(_))), "{fed:?}");
        assert!(writer.finish().is_err());
    }

    #[test]
    fn appending_after_a_torn_record_starts_a_new_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        std::fs::write(&path, "{\"line_number\": 0}\n{\"line_num").unwrap();
        append(&path)
            .unwrap()
            .write_all(b"{\"line_number\": 1}\n")
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"line_number\": 0}\n{\"line_num\n{\"line_number\": 1}\n"
        );
        // A whole file, or a new one, is appended to as it is.
        append(&path).unwrap().write_all(b"x\n").unwrap();
        assert!(std::fs::read_to_string(&path).unwrap().ends_with("1}\nx\n"));
        let fresh = dir.path().join("new.jsonl");
        append(&fresh).unwrap().write_all(b"y\n").unwrap();
        assert_eq!(std::fs::read_to_string(&fresh).unwrap(), "y\n");
    }

    fn text(n: usize, values: Value) -> String {
        let Value::Object(map) = values else {
            panic!("an object")
        };
        serde_json::to_string(&Numbered::new(n, &map)).unwrap()
    }

    #[test]
    fn numbered_puts_the_line_number_first() {
        assert_eq!(
            text(7, json!({"b": 1, "a": [true]})),
            r#"{"line_number":7,"b":1,"a":[true]}"#
        );
        assert_eq!(text(0, json!({})), r#"{"line_number":0}"#);
    }

    #[test]
    fn a_value_named_line_number_replaces_the_number_in_place() {
        // As inserting into a JSON object after the number would.
        assert_eq!(
            text(7, json!({"x": 1, "line_number": "mine"})),
            r#"{"line_number":"mine","x":1}"#
        );
    }
}
