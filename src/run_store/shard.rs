//! Shards: one batch run split over N processes (terminals, CI matrix jobs, Kubernetes Indexed
//! Job pods). Shard K of N (1-based, like Playwright's `--shard`) runs the lines whose 0-based
//! line number `n` has `n % N == K - 1`: every shard gets a share within one line of the others,
//! and a line's shard depends only on its number, so it is the same for every run of a file.
//! Line numbers stay those of the whole dataset. `meta.json` records the shard with the content
//! hashes of the flow (as it ran) and the data, which `flow runs merge` checks.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use crate::model::Flow;

/// Which part of a dataset a run covers: shard `index` (1-based) of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// K, from 1 to `count`.
    pub index: usize,
    /// N, the number of shards.
    pub count: usize,
}

/// Why a shard could not be read from `K/N` or an index.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardError {
    #[error("`{0}` is not a shard: write K/N with 1 <= K <= N, e.g. 2/4")]
    Malformed(String),
    #[error("JOB_COMPLETION_INDEX `{index}` is not a shard of {count}: it must be 0 to {max}", max = count.saturating_sub(1))]
    BadIndex { index: String, count: usize },
}

impl crate::error::Classify for ShardError {
    fn class(&self) -> crate::error::ErrorClass {
        crate::error::ErrorClass::Config
    }
}

impl Shard {
    /// Shard K of N, when `1 <= K <= N`.
    pub fn new(index: usize, count: usize) -> Option<Shard> {
        (index >= 1 && index <= count).then_some(Shard { index, count })
    }

    /// The shard a 0-based completion index (Kubernetes' `JOB_COMPLETION_INDEX`) stands for.
    pub fn from_completion_index(index: &str, count: usize) -> Result<Shard, ShardError> {
        index
            .trim()
            .parse::<usize>()
            .ok()
            .and_then(|i| Shard::new(i + 1, count))
            .ok_or_else(|| ShardError::BadIndex {
                index: index.to_string(),
                count,
            })
    }

    /// Whether line `line_number` (0-based) belongs to this shard.
    pub fn contains(&self, line_number: usize) -> bool {
        line_number % self.count == self.index - 1
    }

    /// How many of the lines `0..total` belong to this shard.
    pub fn lines_of(&self, total: usize) -> usize {
        (total + self.count - self.index) / self.count
    }

    /// `-shard-K-of-N`, the suffix of a shard's default run name.
    pub fn name_suffix(&self) -> String {
        format!("-shard-{}-of-{}", self.index, self.count)
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = ShardError;

    fn from_str(s: &str) -> Result<Shard, ShardError> {
        let bad = || ShardError::Malformed(s.to_string());
        let (k, n) = s.trim().split_once('/').ok_or_else(bad)?;
        let k = k.trim().parse::<usize>().map_err(|_| bad())?;
        let n = n.trim().parse::<usize>().map_err(|_| bad())?;
        Shard::new(k, n).ok_or_else(bad)
    }
}

/// What `meta.json` records about a shard run.
/// What `meta.json` records about a shard run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardInfo {
    /// K, 1-based.
    pub index: usize,
    /// N.
    pub count: usize,
    /// Lines in the whole dataset (the merged run's `total_lines`).
    pub dataset_lines: usize,
    /// `sha256:` of the flow as it ran (variants applied), as `flow experiment` hashes it.
    pub flow_hash: String,
    /// `sha256:` of the data file.
    pub data_hash: String,
}

impl ShardInfo {
    /// The shard this run is.
    pub fn shard(&self) -> Shard {
        Shard {
            index: self.index,
            count: self.count,
        }
    }

    /// The record of shard `shard` of `data` run with `flow` (variants applied), with the
    /// content hashes that tell whether a restarted shard still runs the same inputs.
    /// `dataset_lines` is counted when the run starts.
    pub fn of(flow: &Flow, data: &Path, shard: Shard) -> Result<ShardInfo, ShardHashError> {
        let applied =
            crate::hash::applied_yaml(flow, &IndexMap::new()).map_err(ShardHashError::FlowYaml)?;
        let flow_hash = crate::hash::flow_hash(flow, &applied).map_err(ShardHashError::Flow)?;
        let data_hash = crate::hash::sha256_file(data).map_err(|source| ShardHashError::Data {
            path: data.to_path_buf(),
            source,
        })?;
        Ok(ShardInfo {
            index: shard.index,
            count: shard.count,
            dataset_lines: 0,
            flow_hash,
            data_hash,
        })
    }

    /// What changed since shard `before` of the same run started — `the flow` or `the data` —
    /// if anything did: its lines would then not merge with the other shards'.
    pub fn changed_since(&self, before: &ShardInfo) -> Option<&'static str> {
        if before.flow_hash != self.flow_hash {
            Some("the flow")
        } else if before.data_hash != self.data_hash {
            Some("the data")
        } else {
            None
        }
    }
}

/// Why the content hashes of a shard could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ShardHashError {
    /// The flow's YAML could not be read or its variants applied.
    #[error("{0}")]
    FlowYaml(String),
    /// A file of the flow could not be read.
    #[error("cannot hash the flow: {0}")]
    Flow(#[source] std::io::Error),
    /// The dataset could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Data {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shard_changed_since_another_names_what_changed() {
        let info = |flow: &str, data: &str| ShardInfo {
            index: 1,
            count: 2,
            dataset_lines: 4,
            flow_hash: flow.into(),
            data_hash: data.into(),
        };
        let before = info("f1", "d1");
        assert_eq!(info("f1", "d1").changed_since(&before), None);
        assert_eq!(info("f2", "d1").changed_since(&before), Some("the flow"));
        assert_eq!(info("f1", "d2").changed_since(&before), Some("the data"));
        assert_eq!(info("f2", "d2").changed_since(&before), Some("the flow"));
    }

    #[test]
    fn shards_parse_one_based_and_split_lines_evenly() {
        assert_eq!("2/4".parse::<Shard>(), Ok(Shard { index: 2, count: 4 }));
        for bad in ["0/4", "5/4", "2", "a/b", "1/0", ""] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
        assert_eq!(
            Shard::from_completion_index("0", 3).unwrap(),
            Shard { index: 1, count: 3 }
        );
        assert!(Shard::from_completion_index("3", 3).is_err());
        // Every line is in exactly one shard, and lines_of counts them.
        for total in [0, 1, 7, 10, 25] {
            for count in 1..=5 {
                let mut seen = vec![0; total];
                for index in 1..=count {
                    let s = Shard::new(index, count).unwrap();
                    let mine: Vec<usize> = (0..total).filter(|&n| s.contains(n)).collect();
                    assert_eq!(mine.len(), s.lines_of(total), "{total} {s}");
                    for n in mine {
                        seen[n] += 1;
                    }
                }
                assert!(seen.iter().all(|&c| c == 1));
            }
        }
    }
}
