//! The records of a run directory, in promptflow's shapes, written and read here only: a
//! line's record in the journal (`flow_artifacts/*.jsonl`, `LineRunRecord`) and a node's record
//! in `node_artifacts/<node>/<NNNNNNNNN>.jsonl` (`NodeRunRecord`). The writer, the journal
//! index, resume and `flow report` all go through these types.

use serde::{Deserialize, Serialize};

use crate::record::{LineResult, NodeRun, Status};

/// A node's record in `node_artifacts/<node>/<line>.jsonl` (promptflow's `NodeRunRecord`).
#[derive(Serialize)]
pub(crate) struct NodeRecord<'a> {
    #[serde(rename = "NodeName")]
    pub node_name: &'a str,
    pub line_number: usize,
    pub run_info: &'a NodeRun,
    pub start_time: &'a str,
    pub end_time: &'a str,
    pub status: Status,
}

impl<'a> NodeRecord<'a> {
    /// The record of `node`, a node run of line `line_number` (0 for aggregation nodes).
    pub fn new(node: &'a NodeRun, line_number: usize) -> Self {
        NodeRecord {
            node_name: &node.node,
            line_number,
            run_info: node,
            start_time: &node.start_time,
            end_time: &node.end_time,
            status: node.status,
        }
    }
}

/// A line's record in the journal, `flow_artifacts/*.jsonl` (promptflow's `LineRunRecord`).
/// Its `run_info` is the line without its node runs (they are in `node_artifacts`).
#[derive(Serialize)]
pub(crate) struct LineRecord<'a> {
    pub line_number: usize,
    pub run_info: &'a LineResult,
    pub start_time: &'a str,
    pub end_time: &'a str,
    pub name: &'a str,
    pub description: &'a str,
    pub status: Status,
    pub tags: Option<()>,
}

impl<'a> LineRecord<'a> {
    /// The journal record of `line` in the run named `run`.
    pub fn new(line: &'a LineResult, run: &'a str) -> Self {
        LineRecord {
            line_number: line.line_number,
            run_info: line,
            start_time: &line.start_time,
            end_time: &line.end_time,
            name: run,
            description: "",
            status: line.status,
            tags: None,
        }
    }
}

/// What the journal index needs of a line record: its line number and status.
#[derive(Deserialize)]
pub(crate) struct LineHead {
    pub line_number: usize,
    pub status: Status,
}

#[derive(Deserialize)]
struct OwnedLineRecord {
    run_info: LineResult,
}

#[derive(Deserialize)]
struct OwnedNodeRecord {
    run_info: NodeRun,
}

/// The line of one journal record (one line of `flow_artifacts/*.jsonl`).
pub fn parse_line_record(bytes: &[u8]) -> serde_json::Result<LineResult> {
    crate::non_finite::from_slice::<OwnedLineRecord>(bytes).map(|r| r.run_info)
}

/// The node run of one `node_artifacts` record.
pub fn parse_node_record(bytes: &[u8]) -> serde_json::Result<NodeRun> {
    crate::non_finite::from_slice::<OwnedNodeRecord>(bytes).map(|r| r.run_info)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line() -> LineResult {
        serde_json::from_value(serde_json::json!({
            "line_number": 3, "status": "Completed", "inputs": {"q": 1}, "outputs": {"a": 2},
            "nodes": [], "start_time": "s", "end_time": "e", "duration_ms": 1.0,
            "tokens": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        }))
        .unwrap()
    }

    #[test]
    fn a_written_line_record_reads_back_and_keeps_promptflows_shape() {
        let line = line();
        let text = serde_json::to_string(&LineRecord::new(&line, "run1")).unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        let keys: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "line_number",
                "run_info",
                "start_time",
                "end_time",
                "name",
                "description",
                "status",
                "tags"
            ]
        );
        let back = parse_line_record(text.as_bytes()).unwrap();
        assert_eq!((back.line_number, back.status), (3, Status::Completed));
        assert_eq!(back.outputs, line.outputs);
        let head: LineHead = serde_json::from_str(&text).unwrap();
        assert_eq!((head.line_number, head.status), (3, Status::Completed));
    }

    #[test]
    fn a_torn_record_does_not_parse() {
        let line = line();
        let text = serde_json::to_string(&LineRecord::new(&line, "run1")).unwrap();
        assert!(parse_line_record(&text.as_bytes()[..text.len() / 2]).is_err());
    }
}
