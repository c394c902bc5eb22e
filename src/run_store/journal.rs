//! The journal: `flow_artifacts/*.jsonl`, one record per finished line (promptflow's
//! `LineRunRecord` shape), appended as lines finish. Reading it back gives, for each line number,
//! where its latest record is: the index that resume and finalisation work from.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::PathBuf;

use super::RunDir;
use super::records::{LineHead, parse_line_record, parse_node_record};
use crate::record::{LineResult, Status};

/// Where a line's latest record is.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub status: Status,
    file: usize,
    offset: u64,
    len: usize,
}

/// The index of a run's journal: the latest record of every line that finished.
#[derive(Debug, Default)]
pub struct Journal {
    files: Vec<PathBuf>,
    /// By line number, in order.
    pub entries: BTreeMap<usize, Entry>,
    /// Records that could not be read (a torn last write after a crash).
    pub torn: usize,
}

/// Index every journal file of `dir`. A missing `flow_artifacts` folder is an empty journal.
pub fn read_journal(dir: &RunDir) -> std::io::Result<Journal> {
    let mut journal = Journal::default();
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir.flow_artifacts_dir()) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(journal),
        Err(e) => return Err(e),
    };
    files.sort();
    for (file_index, path) in files.iter().enumerate() {
        let mut reader = BufReader::new(File::open(path)?);
        let mut offset = 0u64;
        let mut buf = Vec::new();
        loop {
            buf.clear();
            let n = reader.read_until(b'\n', &mut buf)?;
            if n == 0 {
                break;
            }
            let complete = buf.last() == Some(&b'\n');
            match crate::non_finite::from_slice::<LineHead>(&buf) {
                Ok(head) if complete => {
                    journal.entries.insert(
                        head.line_number,
                        Entry {
                            status: head.status,
                            file: file_index,
                            offset,
                            len: n,
                        },
                    );
                }
                _ if buf.iter().all(u8::is_ascii_whitespace) => {}
                _ => journal.torn += 1,
            }
            offset += n as u64;
        }
    }
    journal.files = files;
    Ok(journal)
}

impl Journal {
    /// Line numbers whose latest record succeeded.
    pub fn completed(&self) -> impl Iterator<Item = usize> + '_ {
        self.entries
            .iter()
            .filter(|(_, e)| e.status == Status::Completed)
            .map(|(n, _)| *n)
    }

    /// The latest record of one line, if it finished (node runs are in node_artifacts).
    pub fn line(&self, line_number: usize) -> std::io::Result<Option<LineResult>> {
        let Some(entry) = self.entries.get(&line_number) else {
            return Ok(None);
        };
        let mut file = File::open(&self.files[entry.file])?;
        file.seek(SeekFrom::Start(entry.offset))?;
        let mut buf = vec![0u8; entry.len];
        file.read_exact(&mut buf)?;
        parse_line_record(&buf)
            .map(Some)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }

    /// Visit the latest record of every line, in line order (node runs are not in the journal:
    /// they live in node_artifacts). Files are opened once each.
    pub fn for_each(
        &self,
        mut visit: impl FnMut(LineResult) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        let mut open: Option<(usize, File)> = None;
        let mut buf = Vec::new();
        for entry in self.entries.values() {
            if open.as_ref().is_none_or(|(i, _)| *i != entry.file) {
                open = Some((entry.file, File::open(&self.files[entry.file])?));
            }
            let Some((_, file)) = open.as_mut() else {
                continue;
            };
            file.seek(SeekFrom::Start(entry.offset))?;
            buf.resize(entry.len, 0);
            file.read_exact(&mut buf)?;
            let line = parse_line_record(&buf)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
            visit(line)?;
        }
        Ok(())
    }
}

/// The succeeded lines of a run, each with only the node runs named in `nodes` (read from
/// node_artifacts): what aggregation needs when a run is resumed.
pub fn succeeded_lines_with(
    dir: &RunDir,
    journal: &Journal,
    nodes: &std::collections::HashSet<String>,
    format: crate::image::MessageFormat,
) -> std::io::Result<Vec<LineResult>> {
    let mut out = Vec::new();
    journal.for_each(|mut line| {
        if line.status != Status::Completed {
            return Ok(());
        }
        line.outputs = serde_json::Map::new();
        for node in nodes {
            let path = dir.node_artifact(node, line.line_number);
            match std::fs::read(&path) {
                Ok(bytes) => {
                    let node = parse_node_record(&bytes).map_err(|e| {
                        std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            format!("{}: {e}", path.display()),
                        )
                    })?;
                    line.nodes.push(node);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        // The records refer to images as files under the run's `flow_outputs/` (in the flow's
        // message format): the aggregation opens them from there.
        let images = dir.path.join("flow_outputs");
        let resolve = |v: &mut serde_json::Value| {
            crate::image::resolve_paths(v, &images, format);
            crate::image::from_records(v, format);
        };
        line.inputs.values_mut().for_each(resolve);
        for node in &mut line.nodes {
            resolve(&mut node.output);
            node.inputs.values_mut().for_each(resolve);
        }
        out.push(line);
        Ok(())
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn record(n: usize, status: &str) -> String {
        let line = serde_json::json!({
            "line_number": n, "status": status, "inputs": {"q": n}, "outputs": {"a": n},
            "nodes": [], "start_time": "", "end_time": "", "duration_ms": 1.0,
            "tokens": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        });
        format!(
            "{}\n",
            serde_json::json!({"line_number": n, "status": status, "run_info": line})
        )
    }

    #[test]
    fn a_torn_last_record_is_skipped_and_the_latest_record_wins() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path());
        std::fs::create_dir_all(run.flow_artifacts_dir()).unwrap();
        let mut f = std::fs::File::create(run.flow_artifact(0)).unwrap();
        f.write_all(record(0, "Failed").as_bytes()).unwrap();
        f.write_all(record(1, "Completed").as_bytes()).unwrap();
        f.write_all(record(0, "Completed").as_bytes()).unwrap();
        let torn = record(2, "Completed");
        f.write_all(&torn.as_bytes()[..torn.len() / 2]).unwrap();
        drop(f);

        let journal = read_journal(&run).unwrap();
        assert_eq!(journal.torn, 1);
        assert_eq!(journal.entries.len(), 2);
        assert_eq!(journal.completed().collect::<Vec<_>>(), vec![0, 1]);
        let mut seen = Vec::new();
        journal
            .for_each(|l| {
                seen.push((l.line_number, l.status));
                Ok(())
            })
            .unwrap();
        assert_eq!(seen, vec![(0, Status::Completed), (1, Status::Completed)]);
    }

    #[test]
    fn a_missing_journal_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let journal = read_journal(&RunDir::new(dir.path().join("nope"))).unwrap();
        assert!(journal.entries.is_empty());
    }
}
