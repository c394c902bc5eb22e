//! Where things are in a YAML file: a map from a value's path (`nodes[2].inputs.question`) to
//! its line and column, built from yaml-rust2's marked events. serde_yaml gives values without
//! positions; this index lets semantic errors (an unknown reference, a cycle) point at the text.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

use crate::diagnostic::Location;

/// Positions of every mapping key and value in one YAML document.
#[derive(Debug, Default, Clone)]
pub struct YamlIndex {
    values: HashMap<String, Location>,
    keys: HashMap<String, Location>,
}

impl YamlIndex {
    /// Index `text`. A document that does not parse gives an empty index (the syntax error is
    /// reported by the deserializer, with its own location).
    pub fn build(text: &str) -> YamlIndex {
        let mut builder = Builder::default();
        let mut parser = Parser::new_from_str(text);
        if parser.load(&mut builder, false).is_err() {
            return YamlIndex::default();
        }
        builder.index
    }

    /// Where the value at `path` starts (falls back to the nearest indexed parent).
    pub fn value(&self, path: &str) -> Option<Location> {
        let mut p = path;
        loop {
            if let Some(l) = self.values.get(p) {
                return Some(*l);
            }
            p = parent(p)?;
        }
    }

    /// Where the key of the mapping entry at `path` is (falls back to the value, then parents).
    pub fn key(&self, path: &str) -> Option<Location> {
        self.keys.get(path).copied().or_else(|| self.value(path))
    }
}

/// `a.b[3].c` → `a.b[3]` → `a.b` → `a` → none.
fn parent(path: &str) -> Option<&str> {
    let cut = path.rfind(['.', '['])?;
    Some(&path[..cut])
}

/// Join a child key onto a path the way [`YamlIndex`] spells paths.
pub fn join_key(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Join a sequence index onto a path.
pub fn join_index(path: &str, index: usize) -> String {
    format!("{path}[{index}]")
}

enum Frame {
    Map {
        path: String,
        pending_key: Option<String>,
    },
    Seq {
        path: String,
        next: usize,
    },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    index: YamlIndex,
}

impl Builder {
    /// The path of the value about to start, or `None` when the event is a mapping key.
    fn next_value_path(&mut self) -> Option<String> {
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Seq { path, next }) => {
                let p = join_index(path, *next);
                *next += 1;
                Some(p)
            }
            Some(Frame::Map { path, pending_key }) => {
                pending_key.take().map(|k| join_key(path, &k))
            }
        }
    }
}

fn location(mark: Marker, len: usize) -> Location {
    Location::new(mark.line(), mark.col() + 1, len)
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::Scalar(value, ..) => match self.next_value_path() {
                Some(path) => {
                    let len = value.lines().next().map_or(1, |l| l.chars().count());
                    self.index.values.insert(path, location(mark, len));
                }
                None => {
                    if let Some(Frame::Map { path, pending_key }) = self.stack.last_mut() {
                        let key_path = join_key(path, &value);
                        self.index
                            .keys
                            .insert(key_path, location(mark, value.chars().count()));
                        *pending_key = Some(value);
                    }
                }
            },
            Event::Alias(_) => {
                self.next_value_path();
            }
            Event::MappingStart(..) => {
                let path = self.next_value_path().unwrap_or_default();
                self.index.values.insert(path.clone(), location(mark, 1));
                self.stack.push(Frame::Map {
                    path,
                    pending_key: None,
                });
            }
            Event::SequenceStart(..) => {
                let path = self.next_value_path().unwrap_or_default();
                self.index.values.insert(path.clone(), location(mark, 1));
                self.stack.push(Frame::Seq { path, next: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "inputs:\n  q:\n    type: string\nnodes:\n- name: a\n  inputs:\n    x: ${inputs.q}\n- name: b\n";

    #[test]
    fn values_and_keys_have_positions() {
        let idx = YamlIndex::build(TEXT);
        assert_eq!(idx.value("inputs.q.type"), Some(Location::new(3, 11, 6)));
        assert_eq!(idx.key("inputs.q.type"), Some(Location::new(3, 5, 4)));
        assert_eq!(idx.value("nodes[0].name"), Some(Location::new(5, 9, 1)));
        assert_eq!(
            idx.value("nodes[0].inputs.x"),
            Some(Location::new(7, 8, 11))
        );
        assert_eq!(idx.value("nodes[1].name"), Some(Location::new(8, 9, 1)));
    }

    #[test]
    fn unknown_paths_fall_back_to_parents() {
        let idx = YamlIndex::build(TEXT);
        assert_eq!(idx.value("nodes[1].inputs.zzz"), idx.value("nodes[1]"));
        assert_eq!(parent("a.b[3]"), Some("a.b"));
    }
}
