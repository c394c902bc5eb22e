//! CI reports: JUnit XML checked with a real XML parser, the Markdown summary, GitHub annotations.

use flow::ci_report::*;
use flow::gate::{GateResult, check_baseline, check_thresholds};
use serde_json::json;

const NASTY: &str = "<script>alert('x')</script> & \"quotes\" ]]> \u{0}\u{1}\u{8}\u{b}\u{1b}[31m \u{FFFE}\u{FFFF} tab\there\r\nnext line % 100%0A :: , @octocat #12 | pipe `code` *bold* _it_ [link](http://x) ![img](y)";

fn case(line: usize, evaluator: &str, passed: bool, message: &str) -> CaseResult {
    CaseResult {
        line_number: line,
        evaluator: evaluator.into(),
        passed,
        score: Some(if passed { 1.0 } else { 0.0 }),
        message: message.into(),
        duration_s: 0.25,
    }
}

fn gates() -> Vec<GateResult> {
    let cur = json!({"accuracy": 0.72, "f1": 0.9});
    let base = json!({"accuracy": 0.80, "f1": 0.85});
    let cur = cur.as_object().unwrap();
    let mut g = check_thresholds(&["f1>=0.8".parse().unwrap()], cur);
    g.extend(check_baseline(cur, base.as_object().unwrap(), 0.02, None));
    g
}

fn attr<'a>(node: roxmltree::Node<'a, 'a>, name: &str) -> &'a str {
    node.attribute(name)
        .unwrap_or_else(|| panic!("<{}> lacks {name}", node.tag_name().name()))
}

#[test]
fn junit_has_the_structure_ci_systems_read() {
    let cases = vec![
        case(0, "exact_match", true, ""),
        case(1, "exact_match", false, "expected `Paris`, got `Lyon`"),
        case(
            1,
            "run",
            false,
            "the base run failed on this line: HTTP 500",
        ),
    ];
    let xml = junit_xml("qa-flow eval", &cases, &gates());
    let doc = roxmltree::Document::parse(&xml).expect("well-formed XML");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "testsuites");
    assert_eq!(attr(root, "tests"), "6");
    assert_eq!(attr(root, "failures"), "3");

    let suites: Vec<_> = root.children().filter(|n| n.is_element()).collect();
    assert_eq!(suites.len(), 2);
    for s in &suites {
        assert_eq!(s.tag_name().name(), "testsuite");
        for a in ["name", "tests", "failures", "errors", "time"] {
            attr(*s, a);
        }
        let tc: Vec<_> = s.children().filter(|n| n.is_element()).collect();
        assert_eq!(attr(*s, "tests"), tc.len().to_string());
        let failing = tc
            .iter()
            .filter(|t| t.children().any(|c| c.has_tag_name("failure")))
            .count();
        assert_eq!(attr(*s, "failures"), failing.to_string());
        for t in tc {
            assert_eq!(t.tag_name().name(), "testcase");
            for a in ["name", "classname", "time"] {
                attr(t, a);
            }
            attr(t, "time").parse::<f64>().expect("time is a number");
            if let Some(f) = t.children().find(|c| c.has_tag_name("failure")) {
                assert!(!attr(f, "message").is_empty());
            }
        }
    }
    let lines = suites[0];
    assert_eq!(attr(lines, "name"), "qa-flow eval");
    assert_eq!(attr(lines, "time"), "0.750");
    let second = lines.children().filter(|n| n.is_element()).nth(1).unwrap();
    assert_eq!(attr(second, "name"), "line 1: exact_match");
    assert_eq!(attr(second, "classname"), "qa-flow eval.exact_match");
    let failure = second.first_element_child().unwrap();
    assert_eq!(attr(failure, "message"), "expected `Paris`, got `Lyon`");
    assert_eq!(
        failure.text(),
        Some("expected `Paris`, got `Lyon`\nscore: 0.00")
    );
    let base_failure = lines.children().filter(|n| n.is_element()).nth(2).unwrap();
    assert_eq!(attr(base_failure, "classname"), "qa-flow eval.run");

    let gate_suite = suites[1];
    assert_eq!(attr(gate_suite, "name"), "qa-flow eval gates");
    assert_eq!(attr(gate_suite, "tests"), "3");
    assert_eq!(attr(gate_suite, "failures"), "1");
    let regressed = gate_suite
        .children()
        .find(|n| n.attribute("name") == Some("accuracy vs baseline"))
        .unwrap();
    assert_eq!(
        attr(regressed.first_element_child().unwrap(), "message"),
        "FAIL accuracy 0.72 regressed from 0.80 by 0.08 (tolerance 0.02)"
    );
}

#[test]
fn junit_escapes_nasty_text_and_drops_forbidden_characters() {
    let cases = vec![case(3, NASTY, false, NASTY)];
    let mut g = gates();
    g[0].name = NASTY.into();
    g[0].passed = false;
    g[0].verdict = NASTY.into();
    let xml = junit_xml(NASTY, &cases, &g);
    let doc = roxmltree::Document::parse(&xml).expect("nasty text still gives well-formed XML");
    let root = doc.root_element();
    let expected: String = NASTY
        .chars()
        .filter(|c| !matches!(*c as u32, 0..=8 | 0xb | 0xc | 0xe..=0x1f | 0xfffe | 0xffff))
        .collect();
    assert_eq!(
        attr(root, "name"),
        expected,
        "attribute keeps tabs and newlines"
    );
    let tc = root
        .descendants()
        .find(|n| n.has_tag_name("testcase"))
        .unwrap();
    assert_eq!(attr(tc, "name"), format!("line 3: {expected}"));
    let failure = tc.first_element_child().unwrap();
    assert_eq!(failure.text().unwrap(), format!("{expected}\nscore: 0.00"));
    // The message attribute is the first line only.
    assert_eq!(
        attr(failure, "message"),
        expected.lines().next().unwrap().trim()
    );
    assert!(!xml.contains("<script>"));
}

#[test]
fn junit_with_no_cases_or_gates_is_still_valid() {
    let xml = junit_xml("empty", &[], &[]);
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let root = doc.root_element();
    assert_eq!(attr(root, "tests"), "0");
    let suites: Vec<_> = root.children().filter(|n| n.is_element()).collect();
    assert_eq!(suites.len(), 1, "no gate suite without gates");
    assert_eq!(attr(suites[0], "tests"), "0");
}

#[test]
fn junit_time_is_never_negative_or_nan() {
    let mut c = case(0, "e", true, "");
    c.duration_s = f64::NAN;
    let mut d = case(1, "e", true, "");
    d.duration_s = -3.0;
    let xml = junit_xml("s", &[c, d], &[]);
    let doc = roxmltree::Document::parse(&xml).unwrap();
    for n in doc.descendants().filter(|n| n.attribute("time").is_some()) {
        assert_eq!(attr(n, "time"), "0.000");
    }
}

#[test]
fn xml_escapers_cover_the_five_entities() {
    assert_eq!(xml_text("a<b>&\"'\r\n"), "a&lt;b&gt;&amp;\"'&#13;\n");
    assert_eq!(xml_attr("a<b>&\"'\n"), "a&lt;b&gt;&amp;&quot;&apos;&#10;");
    assert_eq!(xml_text("x\u{0}\u{7}y\u{FFFF}"), "xy");
}

#[test]
fn annotations_escape_as_github_requires() {
    assert_eq!(escape_data("50% done\r\nnext"), "50%25 done%0D%0Anext");
    assert_eq!(escape_property("a: b, c%\n"), "a%3A b%2C c%25%0A");
    let cases = vec![
        case(4, "exact_match", false, "got: 100%\nwanted, Paris"),
        case(5, "x", true, ""),
    ];
    let a = github_annotations(&gates(), &cases);
    assert_eq!(a.len(), 2, "{a:?}");
    assert_eq!(
        a[0],
        "::error title=Gate failed%3A accuracy vs baseline::FAIL accuracy 0.72 regressed from 0.80 by 0.08 (tolerance 0.02)"
    );
    assert_eq!(
        a[1],
        "::error title=line 4 failed exact_match::got: 100%25%0Awanted, Paris"
    );
    for line in &a {
        assert!(!line.contains('\n') && !line.contains('\r'));
    }
}

#[test]
fn annotations_are_capped_with_a_count_of_the_rest() {
    let cases: Vec<CaseResult> = (0..25).map(|i| case(i, "e", false, "")).collect();
    let a = github_annotations(&[], &cases);
    assert_eq!(a.len(), MAX_CASE_ANNOTATIONS + 1);
    assert_eq!(a[0], "::error title=line 0 failed e::failed");
    assert!(
        a.last()
            .unwrap()
            .starts_with("::notice title=More failed lines::15 more failed lines")
    );
    assert!(github_annotations(&[], &cases[..3]).len() == 3);
}

fn summary() -> SummaryInput {
    SummaryInput {
        title: "qa-flow".into(),
        verdict_passed: false,
        offline: false,
        gates: gates(),
        metrics: vec![
            ("accuracy".into(), 0.72, Some(0.80)),
            ("f1".into(), 0.9, Some(0.85)),
            ("flow.latency_p95_ms".into(), 900.0, Some(800.0)),
            ("flow.total_tokens".into(), 100.0, Some(120.0)),
            ("new_metric".into(), 1.0, None),
        ],
        worst: vec![(
            7,
            "What is the capital of France?".into(),
            "score 0.00: answered Lyon".into(),
        )],
        failed_base_lines: 2,
        run_name: "pr-42".into(),
        baseline_name: Some("main".into()),
    }
}

#[test]
fn summary_shows_verdict_metrics_deltas_and_worst_lines() {
    let md = markdown_summary(&summary());
    assert!(md.starts_with("## ❌ FAILED: qa-flow\n"), "{md}");
    assert!(
        md.contains("Run **pr-42** compared with baseline **main**"),
        "{md}"
    );
    assert!(
        md.contains("2 lines of the base run failed; they count as failures"),
        "{md}"
    );
    assert!(md.contains("2 of 3 gates passed."), "{md}");
    assert!(md.contains("| ❌ | accuracy vs baseline | FAIL accuracy 0.72 regressed from 0.80 by 0.08 (tolerance 0.02) |"), "{md}");
    assert!(
        md.contains("| accuracy | 0.72 | 0.80 | ▼ -0.08 | ❌ |"),
        "{md}"
    );
    assert!(md.contains("| f1 | 0.90 | 0.85 | ▲ +0.05 | ✅ |"), "{md}");
    assert!(
        md.contains("| flow.latency\\_p95\\_ms | 900 | 800 | ▲ +100 | ⚠️ |"),
        "worse, ungated: {md}"
    );
    assert!(
        md.contains("| flow.total\\_tokens | 100 | 120 | ▼ -20 | ✅ |"),
        "fewer tokens is better: {md}"
    );
    assert!(md.contains("| new\\_metric | 1 | – | new |"), "{md}");
    assert!(
        md.contains("| 7 | What is the capital of France? | score 0.00: answered Lyon |"),
        "{md}"
    );
    assert!(!md.contains("Offline"));
}

#[test]
fn summary_never_shows_an_offline_run_as_a_green_pass() {
    let mut s = summary();
    s.offline = true;
    s.verdict_passed = true;
    s.failed_base_lines = 0;
    let md = markdown_summary(&s);
    assert!(
        md.starts_with("## ⚠️ NOT EVALUATED (offline): qa-flow"),
        "{md}"
    );
    assert!(!md.contains("PASSED"));
    assert!(md.contains("> [!WARNING]\n> Offline"), "{md}");
    assert!(!md.contains("base run failed"));

    s.offline = false;
    let md = markdown_summary(&s);
    assert!(md.starts_with("## ✅ PASSED: qa-flow"), "{md}");
}

#[test]
fn summary_escapes_model_text_so_tables_hold() {
    let mut s = summary();
    s.worst = vec![(1, NASTY.into(), NASTY.into())];
    s.title = "evil | title\n# heading".into();
    let md = markdown_summary(&s);
    assert!(
        md.starts_with("## ❌ FAILED: evil \\| title &#35; heading\n"),
        "{md}"
    );
    let row = md
        .lines()
        .find(|l| l.starts_with("| 1 |"))
        .expect("worst line row");
    let unescaped_pipes = row.replace("\\|", "").matches('|').count();
    assert_eq!(unescaped_pipes, 4, "three cells only: {row}");
    assert!(row.contains("\\| pipe"), "pipes in text are escaped: {row}");
    assert!(row.ends_with(" |"));
    assert!(!row.contains("<script>") && row.contains("&lt;script&gt;"));
    assert!(!row.contains("@octocat") && row.contains("&#64;octocat"));
    assert!(row.contains("\\[link\\]"));
    assert!(row.contains('…'), "long text is cut: {row}");
    let worst_section = md.split("### Worst lines").nth(1).unwrap();
    assert_eq!(
        worst_section.trim().lines().count(),
        3,
        "one row per line: {worst_section}"
    );
}

#[test]
fn summary_without_baseline_or_gates() {
    let s = SummaryInput {
        title: "t".into(),
        verdict_passed: true,
        metrics: vec![("accuracy".into(), 0.9, None)],
        run_name: "r".into(),
        ..Default::default()
    };
    let md = markdown_summary(&s);
    assert!(md.contains("Run **r**.\n"), "{md}");
    let untitled = markdown_summary(&SummaryInput {
        title: " ".into(),
        ..s.clone()
    });
    assert!(
        untitled.starts_with("## ✅ PASSED: flow eval\n"),
        "{untitled}"
    );
    assert!(md.contains("No gates were set"), "{md}");
    assert!(md.contains("| Metric | This run | |"), "{md}");
    assert!(md.contains("| accuracy | 0.90 |  |"), "{md}");
    assert!(!md.contains("Worst lines"));
}
