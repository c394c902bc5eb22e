//! One line: nodes start as soon as what they reference is done; promptflow's bypass rules.
//! Then aggregation: once, over the succeeded lines (docs/flows.md, Aggregation).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use futures::stream::{FuturesUnordered, StreamExt};
use serde_json::{Map, Value};

use super::inputs::{
    Slot, activate_matches, resolve_flow_inputs, resolve_reference, resolve_source,
};
use super::node::{NodeFailure, NodeInputs, NodeOutcome};
use super::{Executor, LineStream, Prepared};
use crate::model::{NodeKind, Reference, ValueSource};
use crate::record::{
    AggregationResult, ErrorInfo, LineResult, NodeRun, Status, Tokens, millis, timestamp,
};

/// What to do with a node whose dependencies are all done.
enum Decision {
    Run(NodeInputs),
    Bypass,
    Fail(ErrorInfo),
}

impl Executor {
    /// Run one line with the given flow inputs (coerced to their types, defaults filled).
    pub async fn run_line(&self, line_number: usize, given: &Map<String, Value>) -> LineResult {
        self.run_line_streaming(line_number, given, None).await
    }

    /// [`run_line`](Self::run_line), streaming the output of one node as it is made: the text
    /// of an LLM node as the model writes it, the pieces of a generator a Python node (or a flex
    /// entry) returns as it yields them (`flow serve` with `Accept: text/event-stream`; see
    /// [`Executor::stream_output`]).
    pub async fn run_line_streaming(
        &self,
        line_number: usize,
        given: &Map<String, Value>,
        stream: Option<&LineStream<'_>>,
    ) -> LineResult {
        let started = SystemTime::now();
        let clock = Instant::now();
        let context = self.operation_context(Some(line_number));
        let finish = |inputs: Map<String, Value>,
                      outputs: Map<String, Value>,
                      error: Option<ErrorInfo>,
                      nodes: Vec<NodeRun>| {
            let mut tokens = Tokens::default();
            let mut cost_usd = 0.0;
            let mut saved_usd = 0.0;
            let mut cache_hits = 0;
            let mut unpriced_models: Vec<String> = Vec::new();
            for n in &nodes {
                if n.tokens.is_some() && n.cost_usd.is_none() {
                    let model = n.model.clone().unwrap_or_else(|| "(unnamed model)".into());
                    if !unpriced_models.contains(&model) {
                        unpriced_models.push(model);
                    }
                }
                if let Some(t) = &n.tokens {
                    tokens.add(t);
                }
                cost_usd += n.cost_usd.unwrap_or(0.0);
                saved_usd += n.saved_usd.unwrap_or(0.0);
                cache_hits += u32::from(n.cached);
            }
            LineResult {
                line_number,
                status: if error.is_some() {
                    Status::Failed
                } else {
                    Status::Completed
                },
                inputs,
                outputs,
                error,
                nodes,
                start_time: timestamp(started),
                end_time: timestamp(SystemTime::now()),
                duration_ms: millis(clock.elapsed()),
                tokens,
                cost_usd,
                saved_usd,
                cache_hits,
                unpriced_models,
            }
        };
        let flow_inputs = match resolve_flow_inputs(&self.flow, given) {
            Ok(i) => i,
            Err(e) => return finish(given.clone(), Map::new(), Some(e), Vec::new()),
        };

        let n = self.flow.nodes.len();
        let mut slots: Vec<Slot> = (0..n).map(|_| Slot::Pending).collect();
        let mut escaped: Vec<Option<String>> = vec![None; n];
        let mut pending: Vec<usize> = self.dag.deps.iter().map(Vec::len).collect();
        let mut records: Vec<NodeRun> = Vec::new();
        let mut ready: Vec<usize> = self
            .dag
            .line_nodes
            .iter()
            .copied()
            .filter(|&i| pending[i] == 0)
            .collect();
        let mut running = FuturesUnordered::new();
        let mut failure: Option<ErrorInfo> = None;

        loop {
            while let Some(i) = ready.pop() {
                match self.decide(i, &flow_inputs, &slots, &escaped) {
                    Decision::Bypass => {
                        slots[i] = Slot::Bypassed;
                        records.push(self.bypassed_record(i));
                        self.release(i, &mut pending, &mut ready);
                    }
                    Decision::Fail(e) => {
                        let e = NodeFailure::from(e);
                        records.push(self.failed_record(
                            i,
                            &Map::new(),
                            &e,
                            SystemTime::now(),
                            Instant::now(),
                        ));
                        failure = Some(e.error);
                        break;
                    }
                    Decision::Run(mut inputs) => {
                        inputs.context = Some(Arc::clone(&context));
                        let node_stream = stream.filter(|s| s.node == i);
                        running.push(async move {
                            let started = SystemTime::now();
                            let clock = Instant::now();
                            let result = self.run_node(i, &inputs, node_stream).await;
                            (i, inputs, result, started, clock)
                        });
                    }
                }
            }
            if failure.is_some() {
                break;
            }
            let Some((i, inputs, result, started, clock)) = running.next().await else {
                break;
            };
            match result {
                Ok(outcome) => {
                    records.push(self.completed_record(
                        i,
                        &inputs.values,
                        &outcome,
                        started,
                        clock,
                    ));
                    escaped[i] = outcome.escaped;
                    slots[i] = Slot::Done(outcome.output);
                    self.release(i, &mut pending, &mut ready);
                }
                Err(e) => {
                    records.push(self.failed_record(i, &inputs.values, &e, started, clock));
                    failure = Some(e.error);
                    break;
                }
            }
        }
        drop(running);
        if failure.is_some() {
            let finished: HashSet<&str> = records.iter().map(|r| r.node.as_str()).collect();
            let canceled: Vec<NodeRun> = self
                .dag
                .line_nodes
                .iter()
                .filter(|&&i| !finished.contains(self.flow.nodes[i].name.as_str()))
                .map(|&i| self.canceled_record(i))
                .collect();
            records.extend(canceled);
            return finish(flow_inputs, Map::new(), failure, records);
        }

        if self.flow.flex.is_some() {
            // A flex flow's outputs are what its entry returned (already a dict, see
            // `PythonCall::flex`).
            let outputs = match slots.into_iter().next() {
                Some(Slot::Done(Value::Object(map))) => map,
                Some(Slot::Done(other)) => Map::from_iter([("output".to_string(), other)]),
                _ => Map::new(),
            };
            return finish(flow_inputs, outputs, None, records);
        }
        let mut outputs = Map::with_capacity(self.flow.outputs.len());
        for (name, output) in self.flow.line_outputs() {
            match resolve_source(&output.reference, &self.flow, &flow_inputs, &slots) {
                Ok(v) => {
                    outputs.insert(name.clone(), v.unwrap_or(Value::Null));
                }
                Err(mut e) => {
                    e.message = format!("flow output `{name}`: {}", e.message);
                    return finish(flow_inputs, outputs, Some(e), records);
                }
            }
        }
        finish(flow_inputs, outputs, None, records)
    }

    /// Run the aggregation nodes once over the succeeded lines, in line order.
    pub async fn run_aggregation(&self, lines: &[LineResult]) -> AggregationResult {
        let mut result = AggregationResult::default();
        if self.dag.aggregation_nodes.is_empty() {
            return result;
        }
        let mut succeeded: Vec<&LineResult> = lines.iter().filter(|l| l.succeeded()).collect();
        succeeded.sort_by_key(|l| l.line_number);
        let n = self.flow.nodes.len();
        let mut slots: Vec<Slot> = (0..n).map(|_| Slot::Pending).collect();
        for &i in &self.dag.aggregation_nodes.clone() {
            let node = &self.flow.nodes[i];
            let mut inputs = NodeInputs {
                values: Map::new(),
                tainted: HashSet::new(),
                bypassed: Vec::new(),
                context: Some(self.operation_context(None)),
            };
            let mut error = None;
            for (name, source) in &node.inputs {
                let value = match source {
                    ValueSource::Literal(v) => Ok(v.clone()),
                    ValueSource::Reference(r @ Reference::NodeOutput { node: target, .. })
                        if self.flow.node(target).is_some_and(|t| t.aggregation) =>
                    {
                        resolve_reference(r, &self.flow, &Map::new(), &slots)
                            .map(|v| v.unwrap_or(Value::Null))
                    }
                    ValueSource::Reference(r) => succeeded
                        .iter()
                        .map(|line| line_value(&self.flow, r, line))
                        .collect::<Result<Vec<Value>, ErrorInfo>>()
                        .map(Value::Array),
                };
                match value {
                    Ok(v) => {
                        inputs.values.insert(name.clone(), v);
                    }
                    Err(e) => {
                        error = Some(e);
                        break;
                    }
                }
            }
            let started = SystemTime::now();
            let clock = Instant::now();
            let outcome = match error {
                Some(e) => Err(e.into()),
                None => self.run_node(i, &inputs, None).await,
            };
            match outcome {
                Ok(outcome) => {
                    for (k, v) in &outcome.metrics {
                        result.metrics.insert(k.clone(), v.clone());
                    }
                    result.nodes.push(self.completed_record(
                        i,
                        &inputs.values,
                        &outcome,
                        started,
                        clock,
                    ));
                    slots[i] = Slot::Done(outcome.output);
                }
                Err(e) => {
                    result
                        .nodes
                        .push(self.failed_record(i, &inputs.values, &e, started, clock));
                    result.error = Some(e.error);
                    break;
                }
            }
        }
        result
    }

    /// Run a single node with the given inputs (`flow run --node`): references are not
    /// followed, the inputs are taken as the node's arguments.
    pub async fn run_single_node(&self, name: &str, given: &Map<String, Value>) -> Option<NodeRun> {
        let i = self.flow.nodes.iter().position(|n| n.name == name)?;
        let node = &self.flow.nodes[i];
        let mut values = Map::new();
        for (k, source) in &node.inputs {
            match (given.get(k), source) {
                (Some(v), _) => {
                    values.insert(k.clone(), v.clone());
                }
                (None, ValueSource::Literal(v)) => {
                    values.insert(k.clone(), v.clone());
                }
                (None, ValueSource::Reference(_)) => {}
            }
        }
        for (k, v) in given {
            values.entry(k.clone()).or_insert_with(|| v.clone());
        }
        let inputs = NodeInputs {
            values,
            tainted: HashSet::new(),
            bypassed: Vec::new(),
            context: None,
        };
        let started = SystemTime::now();
        let clock = Instant::now();
        Some(match self.run_node(i, &inputs, None).await {
            Ok(o) => self.completed_record(i, &inputs.values, &o, started, clock),
            Err(e) => self.failed_record(i, &inputs.values, &e, started, clock),
        })
    }

    /// Decide whether node `i` runs (and with what) or is bypassed.
    fn decide(
        &self,
        i: usize,
        flow_inputs: &Map<String, Value>,
        slots: &[Slot],
        escaped: &[Option<String>],
    ) -> Decision {
        let node = &self.flow.nodes[i];
        let is_bypassed = |source: &ValueSource| {
            source
                .node()
                .and_then(|name| self.flow.nodes.iter().position(|n| n.name == name))
                .is_some_and(|j| matches!(slots[j], Slot::Bypassed))
        };
        if let Some(activate) = &node.activate {
            if is_bypassed(&activate.when) {
                return Decision::Bypass;
            }
            match resolve_source(&activate.when, &self.flow, flow_inputs, slots) {
                Ok(Some(v)) if activate_matches(&v, &activate.is) => {}
                Ok(_) => return Decision::Bypass,
                Err(e) => return Decision::Fail(self.with_node(i, e)),
            }
        } else {
            let mut node_refs = node
                .inputs
                .values()
                .filter(|s| s.node().is_some())
                .peekable();
            if node_refs.peek().is_some() && node_refs.all(is_bypassed) {
                return Decision::Bypass;
            }
        }
        let guards_markers = node.kind != NodeKind::Python;
        let mut inputs = NodeInputs {
            values: Map::with_capacity(node.inputs.len()),
            tainted: HashSet::new(),
            bypassed: Vec::new(),
            context: None,
        };
        for (name, source) in &node.inputs {
            // promptflow drops empty literals so the Python default applies.
            if let ValueSource::Literal(Value::Null) = source {
                if self.keeps_default(i, name) {
                    continue;
                }
            }
            if let ValueSource::Literal(Value::String(s)) = source {
                if s.is_empty() && self.keeps_default(i, name) {
                    continue;
                }
            }
            match resolve_source(source, &self.flow, flow_inputs, slots) {
                Ok(Some(v)) => {
                    if guards_markers {
                        match source {
                            ValueSource::Reference(Reference::FlowInput { .. }) => {
                                inputs.tainted.insert(name.clone());
                            }
                            ValueSource::Reference(Reference::NodeOutput {
                                node: target,
                                path,
                            }) if path.is_empty() => {
                                let j = self.flow.nodes.iter().position(|n| &n.name == target);
                                if let Some(text) = j.and_then(|j| escaped[j].as_ref()) {
                                    inputs
                                        .values
                                        .insert(name.clone(), Value::String(text.clone()));
                                    continue;
                                }
                            }
                            _ => {}
                        }
                    }
                    inputs.values.insert(name.clone(), v);
                }
                Ok(None) => {
                    inputs.bypassed.push(name.clone());
                    if !self.keeps_default(i, name) {
                        inputs.values.insert(name.clone(), Value::Null);
                    }
                }
                Err(e) => return Decision::Fail(self.with_node(i, e)),
            }
        }
        Decision::Run(inputs)
    }

    /// Whether node `i` is a Python tool whose parameter `name` has a default.
    fn keeps_default(&self, i: usize, name: &str) -> bool {
        matches!(&self.prepared[i], Prepared::Python { defaults, .. } if defaults.iter().any(|d| d == name))
    }

    /// Node `i` finished (or was bypassed): its dependents may now be ready.
    fn release(&self, i: usize, pending: &mut [usize], ready: &mut Vec<usize>) {
        for &d in &self.dag.dependents[i] {
            pending[d] -= 1;
            if pending[d] == 0 && !self.flow.nodes[d].aggregation {
                ready.push(d);
            }
        }
    }

    fn with_node(&self, i: usize, mut e: ErrorInfo) -> ErrorInfo {
        let name = &self.flow.nodes[i].name;
        e.message = format!("node `{name}`: {}", e.message);
        e.node = Some(name.clone());
        e
    }

    fn record(&self, i: usize, status: Status) -> NodeRun {
        let now = timestamp(SystemTime::now());
        NodeRun {
            node: self.flow.nodes[i].name.clone(),
            status,
            inputs: Map::new(),
            output: Value::Null,
            error: None,
            start_time: now.clone(),
            end_time: now,
            duration_ms: 0.0,
            tokens: None,
            model: None,
            served_by: None,
            variant_id: self.flow.nodes[i].variant_id.clone(),
            cost_usd: None,
            cached: false,
            saved_usd: None,
            retries: 0,
            metrics: Map::new(),
            stdout: String::new(),
            model_calls: 0,
            traces: Vec::new(),
        }
    }

    fn bypassed_record(&self, i: usize) -> NodeRun {
        self.record(i, Status::Bypassed)
    }

    fn canceled_record(&self, i: usize) -> NodeRun {
        self.record(i, Status::Canceled)
    }

    fn completed_record(
        &self,
        i: usize,
        inputs: &Map<String, Value>,
        o: &NodeOutcome,
        started: SystemTime,
        clock: Instant,
    ) -> NodeRun {
        NodeRun {
            inputs: inputs.clone(),
            output: o.output.clone(),
            start_time: timestamp(started),
            end_time: timestamp(SystemTime::now()),
            duration_ms: millis(clock.elapsed()),
            tokens: o.tokens,
            model: o.model.clone(),
            served_by: o.served_by.clone(),
            retries: o.retries,
            cached: o.cached,
            cost_usd: o.cost_usd,
            saved_usd: o.saved_usd,
            metrics: o.metrics.clone(),
            stdout: o.stdout.clone(),
            model_calls: o.host_calls,
            traces: o.traces.clone(),
            ..self.record(i, Status::Completed)
        }
    }

    /// A failed node's record: its error, and what it spent before failing (see
    /// [`NodeFailure`]).
    fn failed_record(
        &self,
        i: usize,
        inputs: &Map<String, Value>,
        e: &NodeFailure,
        started: SystemTime,
        clock: Instant,
    ) -> NodeRun {
        let failed = NodeRun {
            inputs: inputs.clone(),
            error: Some(e.error.clone()),
            start_time: timestamp(started),
            end_time: timestamp(SystemTime::now()),
            duration_ms: millis(clock.elapsed()),
            ..self.record(i, Status::Failed)
        };
        match &e.spent {
            None => failed,
            Some(o) => NodeRun {
                tokens: o.tokens,
                model: o.model.clone(),
                retries: o.retries,
                cost_usd: o.cost_usd,
                saved_usd: o.saved_usd,
                stdout: o.stdout.clone(),
                model_calls: o.host_calls,
                traces: o.traces.clone(),
                ..failed
            },
        }
    }
}

/// The value a reference had in a finished line (for aggregation inputs).
fn line_value(
    flow: &crate::model::Flow,
    reference: &Reference,
    line: &LineResult,
) -> Result<Value, ErrorInfo> {
    let slot = match reference {
        Reference::FlowInput { .. } => None,
        Reference::NodeOutput { node, .. } => {
            Some(match line.nodes.iter().find(|r| &r.node == node) {
                Some(r) if r.status == Status::Completed => Slot::Done(r.output.clone()),
                Some(r) if r.status == Status::Bypassed => Slot::Bypassed,
                _ => Slot::Pending,
            })
        }
    };
    let index = match reference {
        Reference::NodeOutput { node, .. } => flow.nodes.iter().position(|n| &n.name == node),
        Reference::FlowInput { .. } => None,
    };
    let mut slots: Vec<Slot> = Vec::new();
    if let (Some(i), Some(slot)) = (index, slot) {
        slots = (0..flow.nodes.len()).map(|_| Slot::Pending).collect();
        slots[i] = slot;
    }
    resolve_reference(reference, flow, &line.inputs, &slots).map(|v| v.unwrap_or(Value::Null))
}
