//! Data files, column mapping, base runs and the price table.

use std::io::Write;
use std::path::{Path, PathBuf};

use flow::cost::{Price, PriceError, PriceTable};
use flow::data::{self, BaseRun, ColumnMapping, DataError, Format, MappingError, Row, RowError};
use flow::model::{FlowInput, ValueType};
use indexmap::IndexMap;
use serde_json::{Map, Value, json};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/data")
        .join(name)
}

fn read_all(path: &Path) -> Vec<Result<Row, RowError>> {
    data::open(path).unwrap().collect()
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path
}

// ---------------------------------------------------------------- readers

#[test]
fn jsonl_skips_blank_lines_strips_bom_and_reports_bad_lines_by_row() {
    let path = fixture("rows.jsonl");
    let items = read_all(&path);
    assert_eq!(items.len(), 5, "{items:?}");

    let first = items[0].as_ref().unwrap();
    assert_eq!((first.line_number, first.row), (0, 1));
    assert_eq!(
        first.values,
        obj(json!({"question": "q0", "answer": "a0", "n": 1}))
    );
    let keys: Vec<_> = first.values.keys().collect();
    assert_eq!(
        keys,
        ["question", "answer", "n"],
        "BOM must not stick to the first key"
    );

    let second = items[1].as_ref().unwrap();
    assert_eq!((second.line_number, second.row), (1, 4));
    assert_eq!(second.values["question"], "q1");

    let bad = items[2].as_ref().unwrap_err();
    assert_eq!((bad.line_number, bad.row), (2, 5));
    assert!(bad.message.contains("not valid JSON"), "{}", bad.message);
    assert!(bad.to_string().starts_with("data row 5:"), "{bad}");

    let not_object = items[3].as_ref().unwrap_err();
    assert_eq!((not_object.line_number, not_object.row), (3, 6));
    assert!(not_object.message.contains("an array, not a JSON object"));

    let last = items[4].as_ref().unwrap();
    assert_eq!((last.line_number, last.row), (4, 7));
    assert_eq!(last.values["meta"]["tags"][1], "y");

    assert_eq!(data::count_rows(&path).unwrap(), 5);
}

#[test]
fn csv_keeps_strings_handles_quotes_newlines_bom_and_bad_field_counts() {
    let path = fixture("quoted.csv");
    let items = read_all(&path);
    assert_eq!(items.len(), 4, "{items:?}");

    let r0 = items[0].as_ref().unwrap();
    assert_eq!((r0.line_number, r0.row), (0, 2));
    assert_eq!(
        r0.values,
        obj(json!({"question": "q0", "answer": "a0", "notes": "plain"}))
    );

    let r1 = items[1].as_ref().unwrap();
    assert_eq!((r1.line_number, r1.row), (1, 3));
    assert_eq!(r1.values["question"], "q1, with comma");
    assert_eq!(r1.values["answer"], "a1 \"quoted\"");
    assert_eq!(r1.values["notes"], "line one\nline two");

    let bad = items[2].as_ref().unwrap_err();
    assert_eq!((bad.line_number, bad.row), (2, 6));
    assert!(
        bad.message.contains("has 2 fields but the header has 3"),
        "{}",
        bad.message
    );

    let r3 = items[3].as_ref().unwrap();
    assert_eq!((r3.line_number, r3.row), (3, 7));
    assert_eq!(
        r3.values["notes"], "",
        "an empty cell stays an empty string"
    );

    assert_eq!(data::count_rows(&path).unwrap(), 4);
}

#[test]
fn csv_rows_are_reported_at_their_file_line() {
    let dir = tempfile::tempdir().unwrap();
    // Blank lines, a multi-line cell, CRLF endings and no final newline.
    let text = "a,b\r\n\r\n1,2\r\n\r\n\r\n\"x\r\ny\",\"3\"\r\n4\n\n5,6";
    let path = write(dir.path(), "lines.csv", text);
    let rows: Vec<(usize, usize)> = read_all(&path)
        .into_iter()
        .map(|item| match item {
            Ok(r) => (r.line_number, r.row),
            Err(e) => (e.line_number, e.row),
        })
        .collect();
    assert_eq!(rows, [(0, 3), (1, 6), (2, 8), (3, 10)]);
    let items = read_all(&path);
    let first = items[0].as_ref().unwrap();
    assert_eq!(
        first.values,
        obj(json!({"a": "1", "b": "2"})),
        "no \\r left in cells"
    );
    let multi = items[1].as_ref().unwrap();
    assert_eq!(multi.values, obj(json!({"a": "x\r\ny", "b": "3"})));
    assert_eq!(data::count_rows(&path).unwrap(), 4);
}

#[test]
fn csv_numbers_stay_strings_and_duplicate_headers_are_renamed() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "d.csv", "n,n,\n1,2.5,x\n");
    let items = read_all(&path);
    let row = items[0].as_ref().unwrap();
    assert_eq!(
        row.values,
        obj(json!({"n": "1", "n.1": "2.5", "Unnamed: 2": "x"}))
    );
}

#[test]
fn tsv_reads_tabs_and_quoted_tabs() {
    let path = fixture("rows.tsv");
    assert_eq!(Format::detect(&path).unwrap(), Format::Tsv);
    let rows: Vec<Row> = read_all(&path).into_iter().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        rows[0].values,
        obj(json!({"question": "q0", "answer": "a0"}))
    );
    assert_eq!(rows[1].values["question"], "q1\tstill q1");
    assert_eq!(data::count_rows(&path).unwrap(), 2);
}

#[test]
fn json_array_streams_elements_and_reports_non_objects() {
    let path = fixture("array.json");
    assert_eq!(Format::detect(&path).unwrap(), Format::JsonArray);
    let items = read_all(&path);
    assert_eq!(items.len(), 4, "{items:?}");

    let r0 = items[0].as_ref().unwrap();
    assert_eq!((r0.line_number, r0.row), (0, 1));
    assert_eq!(r0.values["answer"], "a [tricky] {brace}");

    let r1 = items[1].as_ref().unwrap();
    assert_eq!((r1.line_number, r1.row), (1, 2));
    assert_eq!(r1.values["question"], "q1 \"quoted\" \\");
    assert_eq!(r1.values["answer"], json!(1.5));
    assert_eq!(r1.values["nested"]["list"][1], json!([2, 3]));

    let bad = items[2].as_ref().unwrap_err();
    assert_eq!((bad.line_number, bad.row), (2, 3));
    assert!(bad.message.contains("line 5, column 3"), "{}", bad.message);
    assert!(
        bad.message.contains("a string, not a JSON object"),
        "{}",
        bad.message
    );

    let r3 = items[3].as_ref().unwrap();
    assert_eq!((r3.line_number, r3.row), (3, 4));
    assert_eq!(r3.values["answer"], json!(true));

    assert_eq!(data::count_rows(&path).unwrap(), 4);
}

#[test]
fn json_file_holding_json_lines_is_read_as_json_lines() {
    let path = fixture("lines.json");
    assert_eq!(Format::detect(&path).unwrap(), Format::JsonLines);
    let rows: Vec<Row> = read_all(&path).into_iter().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1].values["question"], "q1");
}

#[test]
fn empty_and_whitespace_only_arrays_have_no_rows() {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in [("a.json", "[]"), ("b.json", "  [ \n ]  \n"), ("c.json", "")] {
        let path = write(dir.path(), name, text);
        assert!(read_all(&path).is_empty(), "{name}");
        assert_eq!(data::count_rows(&path).unwrap(), 0, "{name}");
    }
}

#[test]
fn malformed_json_array_is_a_data_error_with_position() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "missing_close.json",
            "[\n {\"a\": 1},\n {\"a\": 2}\n",
            4,
            "not closed",
        ),
        (
            "missing_comma.json",
            "[\n {\"a\": 1}\n {\"a\": 2}\n]",
            3,
            "expected `,` or `]`",
        ),
        (
            "trailing_comma.json",
            "[{\"a\": 1},\n]",
            2,
            "trailing comma",
        ),
        ("not_array.json", "\n\n  \"text\"", 3, "expected `[`"),
        (
            "garbage_after.json",
            "[{\"a\": 1}] x",
            1,
            "after the closing",
        ),
    ];
    for (name, text, line, needle) in cases {
        let path = write(dir.path(), name, text);
        let err: DataError = data::count_rows(&path).unwrap_err();
        let position = err.position.expect("a position");
        assert_eq!(position.line, line, "{name}: {err}");
        assert!(err.message.contains(needle), "{name}: {err}");
        assert!(err.to_string().contains(name), "{name}: {err}");
        assert!(!err.hint.is_empty());

        // Reading yields the rows before the problem, then one error item, then stops.
        let mut reader = data::open(&path).unwrap();
        let items: Vec<_> = reader.by_ref().collect();
        let last = items.last().expect("an error item").as_ref().unwrap_err();
        assert!(last.message.contains(needle), "{name}: {last}");
        assert!(reader.fatal().is_some(), "{name}");
        assert!(reader.next().is_none());
    }
}

#[test]
fn unreadable_and_unsupported_files_are_data_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.jsonl");
    let err = data::open(&missing).err().expect("an error");
    assert!(err.to_string().contains("nope.jsonl"), "{err}");
    assert!(err.hint.contains("check the path"), "{err}");

    let parquet = write(dir.path(), "d.parquet", "PAR1");
    let err = data::open(&parquet).err().expect("an error");
    assert!(err.hint.contains(".jsonl"), "{err}");

    let dir_err = data::open(dir.path()).err().expect("an error");
    assert!(dir_err.message.contains("directory"), "{dir_err}");

    let unknown = write(dir.path(), "d.txt", "hello\n");
    assert!(data::open(&unknown).is_err());
    let unknown_jsonl = write(dir.path(), "d.data", "{\"a\": 1}\n");
    assert_eq!(read_all(&unknown_jsonl).len(), 1);
}

fn rss_kib() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn big_json_array_streams_without_loading_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.json");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let filler = "x".repeat(180);
    let target = 50 * 1024 * 1024;
    let mut written = 0usize;
    let mut elements = 0usize;
    out.write_all(b"[\n").unwrap();
    while written < target {
        let line = format!(
            "{}{{\"id\": {elements}, \"text\": \"{filler}\", \"tags\": [\"a\", {{\"b\": \"]\"}}]}}\n",
            if elements == 0 { "" } else { "," }
        );
        out.write_all(line.as_bytes()).unwrap();
        written += line.len();
        elements += 1;
    }
    out.write_all(b"]\n").unwrap();
    out.flush().unwrap();
    drop(out);

    let before = rss_kib();
    let mut count = 0usize;
    let mut peak = before.unwrap_or(0);
    for (i, item) in data::open(&path).unwrap().enumerate() {
        let row = item.unwrap();
        assert_eq!(row.values["id"], json!(i));
        count += 1;
        if i % 20_000 == 0 {
            peak = peak.max(rss_kib().unwrap_or(0));
        }
    }
    assert_eq!(count, elements);
    assert_eq!(data::count_rows(&path).unwrap(), elements);
    if let Some(before) = before {
        let grown_mib = peak.saturating_sub(before) / 1024;
        assert!(
            grown_mib < 10,
            "RSS grew by {grown_mib} MiB while streaming a 50 MiB file"
        );
    }
}

// ---------------------------------------------------------------- mapping

fn inputs(spec: &[(&str, Option<Value>)]) -> IndexMap<String, FlowInput> {
    spec.iter()
        .map(|(name, default)| {
            (
                (*name).to_string(),
                FlowInput {
                    name: (*name).to_string(),
                    ty: ValueType::String,
                    default: default.clone(),
                    description: None,
                    allowed: None,
                    is_chat_input: false,
                    is_chat_history: false,
                },
            )
        })
        .collect()
}

fn row(line_number: usize, values: Value) -> Row {
    Row {
        line_number,
        row: line_number + 2,
        values: obj(values),
    }
}

fn mapping(args: &[&str]) -> ColumnMapping {
    ColumnMapping::parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
}

#[test]
fn explicit_beats_same_named_beats_default_and_extra_columns_are_dropped() {
    let flow_inputs = inputs(&[
        ("question", None),
        ("answer", Some(json!("default answer"))),
        ("context", Some(json!("default context"))),
    ]);
    let r = row(
        0,
        json!({"question": "same-named q", "q2": "mapped q", "answer": "same-named a", "extra": 1}),
    );
    let got = mapping(&["question=${data.q2}"])
        .apply(&flow_inputs, &r, None)
        .unwrap();
    assert_eq!(
        got,
        obj(json!({"question": "mapped q", "answer": "same-named a"})),
        "context is left out so the executor applies its default; `extra` is not passed"
    );
    let keys: Vec<_> = got.keys().collect();
    assert_eq!(keys, ["question", "answer"], "flow input order");

    let unmapped = ColumnMapping::default()
        .apply(&flow_inputs, &r, None)
        .unwrap();
    assert_eq!(
        unmapped,
        obj(json!({"question": "same-named q", "answer": "same-named a"}))
    );
}

#[test]
fn literals_nested_paths_and_extra_mapped_names() {
    let flow_inputs = inputs(&[("lang", None), ("first_tag", None), ("model", None)]);
    let r = row(
        3,
        json!({"meta": {"lang": "en", "tags": ["x", "y"]}, "a.b": "dotted column"}),
    );
    let got = mapping(&[
        "lang=${data.meta.lang}",
        "first_tag=${data.meta.tags.0}",
        "model=gpt-4o",
        "also=${data.a.b}",
    ])
    .apply(&flow_inputs, &r, None)
    .unwrap();
    assert_eq!(
        got,
        obj(json!({"lang": "en", "first_tag": "x", "model": "gpt-4o", "also": "dotted column"}))
    );
}

#[test]
fn from_map_keeps_non_string_literals() {
    let m = ColumnMapping::from_map(&obj(json!({"k": 3, "q": "${data.question}"}))).unwrap();
    let got = m
        .apply(
            &inputs(&[("q", None)]),
            &row(0, json!({"question": "hi"})),
            None,
        )
        .unwrap();
    assert_eq!(got, obj(json!({"q": "hi", "k": 3})));
}

#[test]
fn missing_mapped_column_names_row_column_and_existing_columns() {
    let flow_inputs = inputs(&[("question", None), ("truth", None)]);
    let r = row(4, json!({"question": "q", "answer": "a"}));
    let err = mapping(&["truth=${data.ground_truth}", "question=${data.q}"])
        .apply(&flow_inputs, &r, None)
        .unwrap_err();
    match &err {
        MappingError::MissingColumns {
            row,
            line_number,
            missing,
        } => {
            assert_eq!((*row, *line_number), (6, 4));
            let exprs: Vec<_> = missing.iter().map(|m| m.expr.as_str()).collect();
            assert_eq!(exprs, ["${data.q}", "${data.ground_truth}"]);
            assert_eq!(missing[0].available, ["question", "answer"]);
        }
        other => panic!("unexpected {other:?}"),
    }
    let text = err.to_string();
    assert!(text.starts_with("data row 6:"), "{text}");
    assert!(
        text.contains("${data.ground_truth}") && text.contains("question, answer"),
        "{text}"
    );
    assert!(text.contains("--column-mapping"), "{text}");
}

#[test]
fn base_run_joins_by_line_number_even_out_of_order() {
    let base = BaseRun::load(&fixture("base_run")).unwrap();
    assert_eq!(base.succeeded(), 2);
    let flow_inputs = inputs(&[("prev", None), ("score", None), ("q", None)]);
    let m = mapping(&[
        "prev=${run.outputs.answer}",
        "score=${run.outputs.detail.score}",
        "q=${run.inputs.question}",
    ]);
    assert!(m.needs_base_run());

    for (line_number, answer, score, question) in [(0, "out0", 0.0, "q0"), (2, "out2", 0.2, "q2")] {
        let r = row(line_number, json!({}));
        let line = base.line(line_number).unwrap().expect("a base line");
        assert!(!line.outputs.as_ref().unwrap().contains_key("line_number"));
        let expected = obj(json!({"prev": answer, "score": score, "q": question}));
        assert_eq!(m.apply(&flow_inputs, &r, Some(&line)).unwrap(), expected);
        assert_eq!(
            m.apply_with_run(&flow_inputs, &r, Some(&base)).unwrap(),
            expected
        );
    }
}

#[test]
fn failed_or_missing_base_lines_and_missing_run_are_row_errors() {
    let base = BaseRun::load(&fixture("base_run")).unwrap();
    let flow_inputs = inputs(&[("prev", None)]);
    let m = mapping(&["prev=${run.outputs.answer}"]);

    let failed = m
        .apply_with_run(&flow_inputs, &row(1, json!({})), Some(&base))
        .unwrap_err();
    assert!(matches!(
        failed,
        MappingError::BaseLineFailed {
            line_number: 1,
            row: 3,
            ..
        }
    ));
    assert!(failed.to_string().contains("failed"), "{failed}");

    // The failed line still has its inputs.
    let inputs_only = mapping(&["prev=${run.inputs.question}"])
        .apply_with_run(&flow_inputs, &row(1, json!({})), Some(&base))
        .unwrap();
    assert_eq!(inputs_only, obj(json!({"prev": "q1"})));

    let absent = m
        .apply_with_run(&flow_inputs, &row(7, json!({})), Some(&base))
        .unwrap_err();
    assert!(
        matches!(absent, MappingError::NoBaseLine { line_number: 7, .. }),
        "{absent}"
    );

    let no_run = m
        .apply_with_run(&flow_inputs, &row(0, json!({})), None)
        .unwrap_err();
    assert!(matches!(no_run, MappingError::NoBaseRun { .. }));
    assert!(no_run.to_string().contains("--run"), "{no_run}");

    let missing_output = mapping(&["prev=${run.outputs.nope}"])
        .apply_with_run(&flow_inputs, &row(0, json!({})), Some(&base))
        .unwrap_err();
    let text = missing_output.to_string();
    assert!(
        text.contains("${run.outputs.nope}") && text.contains("answer, detail"),
        "{text}"
    );
}

#[test]
fn base_run_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let err = BaseRun::load(dir.path()).unwrap_err();
    assert!(err.to_string().contains("output.jsonl"), "{err}");
    assert!(err.hint.contains("run directory"), "{err}");

    std::fs::create_dir(dir.path().join("flow_outputs")).unwrap();
    write(
        &dir.path().join("flow_outputs"),
        "output.jsonl",
        "{\"line_number\": 0, \"a\": 1}\n{\"a\": 2}\n",
    );
    let err = BaseRun::load(dir.path()).unwrap_err();
    assert_eq!(err.position.map(|p| p.line), Some(2), "{err}");
    assert!(err.message.contains("line_number"), "{err}");
}

// ---------------------------------------------------------------- prices

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

#[test]
fn price_lookup_exact_prefix_longest_prefix_case_and_unknown() {
    let t = PriceTable::builtin();
    let mini = t.price_of("gpt-4o-mini").unwrap();
    let full = t.price_of("gpt-4o").unwrap();
    assert_ne!(mini, full, "gpt-4o-mini must not take gpt-4o's price");
    assert_eq!(t.price_of("gpt-4o-mini-2024-07-18"), Some(mini));
    assert_eq!(t.price_of("GPT-4o-Mini"), Some(mini));
    assert_eq!(t.price_of("gpt-4o-2024-08-06"), Some(full));
    assert_eq!(
        t.price_of("gpt-4.1-nano-2025-04-14"),
        t.price_of("gpt-4.1-nano")
    );
    assert_eq!(
        t.price_of("claude-3-5-sonnet-20241022"),
        t.price_of("claude-3-5-sonnet")
    );
    assert_eq!(
        t.price_of("text-embedding-3-small").map(|p| p.output),
        Some(0.0)
    );
    assert_eq!(t.price_of("llama3:8b"), None);
    assert_eq!(t.cost("some-local-model", 10, 10), None);
    assert_eq!(t.cost("echo", 1_000, 1_000), Some(0.0));

    let cost = t
        .cost("gpt-4o-mini-2024-07-18", 1_000_000, 500_000)
        .unwrap();
    assert!(close(cost, mini.input + mini.output / 2.0), "{cost}");
}

#[test]
fn override_files_merge_in_yaml_and_json() {
    let mut t = PriceTable::builtin();
    t.load_overrides(&fixture("prices.yaml")).unwrap();
    assert_eq!(
        t.price_of("my-deployment"),
        Some(Price {
            input: 1.0,
            output: 2.0
        })
    );
    assert_eq!(
        t.price_of("gpt-4o-2024-08-06"),
        Some(Price {
            input: 5.0,
            output: 20.0
        }),
        "an override replaces the built-in price, prefix matching included"
    );
    assert_ne!(t.price_of("gpt-4o-mini"), t.price_of("gpt-4o"));

    let mut t = PriceTable::builtin();
    t.load_overrides(&fixture("prices.json")).unwrap();
    assert!(close(
        t.cost("my-deployment", 2_000_000, 1_000_000).unwrap(),
        0.9
    ));
}

#[test]
fn bad_price_files_report_file_line_and_column() {
    let mut t = PriceTable::builtin();
    let err = t.load_overrides(&fixture("bad_prices.yaml")).unwrap_err();
    match &err {
        PriceError::Syntax { line, .. } => assert!(*line >= 3, "{err}"),
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.to_string().contains("bad_prices.yaml:"), "{err}");

    let err = t.load_overrides(&fixture("bad_prices.json")).unwrap_err();
    match &err {
        PriceError::Syntax { line, message, .. } => {
            assert_eq!(*line, 3, "{err}");
            assert!(message.contains("outptu"), "{err}");
        }
        other => panic!("unexpected {other:?}"),
    }

    let dir = tempfile::tempdir().unwrap();
    let negative = write(dir.path(), "p.yaml", "m: {input: -1, output: 1}\n");
    assert!(matches!(
        t.load_overrides(&negative),
        Err(PriceError::Invalid { .. })
    ));
    let missing = t.load_overrides(&dir.path().join("none.yaml")).unwrap_err();
    assert!(matches!(missing, PriceError::Io { .. }), "{missing}");
}

#[test]
fn price_discovery_order() {
    let project = tempfile::tempdir().unwrap();
    std::fs::create_dir(project.path().join(".flow")).unwrap();
    write(
        &project.path().join(".flow"),
        "prices.yaml",
        "local-model: {input: 3, output: 4}\n",
    );
    let env_file = write(
        project.path(),
        "env.json",
        "{\"env-model\": {\"input\": 1, \"output\": 1}}",
    );
    let explicit = fixture("prices.json");

    let t = PriceTable::from_sources(None, None, project.path()).unwrap();
    assert!(t.price_of("local-model").is_some());

    let t = PriceTable::from_sources(None, Some(env_file.clone().into()), project.path()).unwrap();
    assert!(t.price_of("env-model").is_some());
    assert!(t.price_of("local-model").is_none());

    let t =
        PriceTable::from_sources(Some(&explicit), Some(env_file.into()), project.path()).unwrap();
    assert!(t.price_of("my-deployment").is_some());
    assert!(t.price_of("env-model").is_none());

    let err = PriceTable::from_sources(None, Some("/no/such/prices.yaml".into()), project.path())
        .unwrap_err();
    assert!(err.to_string().contains("FLOW_PRICES"), "{err}");

    let empty = tempfile::tempdir().unwrap();
    let t = PriceTable::from_sources(None, None, empty.path()).unwrap();
    assert!(t.price_of("gpt-4o").is_some());
}
