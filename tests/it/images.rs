//! Images end to end, as promptflow handles them: `type: image` inputs in every form, `Image`
//! objects in Python tools, vision content parts in chat requests (OpenAI, Azure OpenAI,
//! Anthropic), image outputs persisted in the run directory, thumbnails in the HTML report.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::support::context::TestContext;

/// A real, decodable `w`×`h` RGB PNG of one colour (stored deflate blocks, no compression).
pub fn png(w: u32, h: u32, rgb: [u8; 3]) -> Vec<u8> {
    fn crc32(data: &[u8]) -> u32 {
        let mut crc = 0xffff_ffffu32;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xedb8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
    fn chunk(out: &mut Vec<u8>, kind: &[u8], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        out.extend_from_slice(&body);
        out.extend_from_slice(&crc32(&body).to_be_bytes());
    }
    let row: Vec<u8> = std::iter::once(0u8)
        .chain((0..w).flat_map(|_| rgb))
        .collect();
    let raw: Vec<u8> = (0..h).flat_map(|_| row.iter().copied()).collect();
    let mut z = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = raw.chunks(65_535).collect();
    for (i, block) in blocks.iter().enumerate() {
        z.push(u8::from(i + 1 == blocks.len()));
        let len = block.len() as u16;
        z.extend_from_slice(&len.to_le_bytes());
        z.extend_from_slice(&(!len).to_le_bytes());
        z.extend_from_slice(block);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &x in &raw {
        a = (a + u32::from(x)) % 65_521;
        b = (b + a) % 65_521;
    }
    z.extend_from_slice(&((b << 16) | a).to_be_bytes());
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &z);
    chunk(&mut out, b"IEND", &[]);
    out
}

const VISION_FLOW: &str = r#"
inputs:
  img: {type: image}
  question: {type: string, default: What is this?}
outputs:
  answer: {reference: '${ask.output}'}
nodes:
- name: ask
  type: llm
  source: {type: code, path: ask.jinja2}
  connection: open_ai_connection
  api: chat
  inputs: {model: gpt-4o, deployment_name: gpt-4o, img: '${inputs.img}', question: '${inputs.question}'}
"#;

const VISION_TEMPLATE: &str =
    "# system:\nYou describe images.\n# user:\n{{question}}\n![image]({{img}}) Be brief.\n";

fn vision_flow(ctx: &TestContext) -> Vec<u8> {
    let bytes = png(2, 2, [255, 0, 0]);
    ctx.flow(
        "vision",
        &[
            ("flow.dag.yaml", VISION_FLOW),
            ("ask.jinja2", VISION_TEMPLATE),
        ],
    );
    std::fs::write(ctx.root().join("vision/red.png"), &bytes).unwrap();
    bytes
}

/// The request body `flow run vision --inputs img=...` sends, with the connection's type set.
fn sent_body(ctx: &TestContext, api_type: Option<&str>, img: &str) -> Value {
    let mut cmd = ctx.cmd();
    if let Some(t) = api_type {
        cmd.env("OPEN_AI_CONNECTION_API_TYPE", t)
            .env("OPEN_AI_CONNECTION_API_BASE", ctx.mock().url());
    }
    let out = cmd
        .args([
            "run",
            "vision",
            "--inputs",
            &format!("img={img}"),
            "--no-cache",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reqs = ctx.mock().requests();
    let body = reqs.last().map(|r| r.body.clone()).unwrap_or_default();
    ctx.mock().clear_requests();
    body
}

#[test]
fn chat_images_become_each_providers_content_parts() {
    let ctx = TestContext::with_mock();
    let bytes = vision_flow(&ctx);
    let uri = format!("data:image/png;base64,{}", STANDARD.encode(&bytes));
    let openai_user = json!({"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": uri, "detail": "auto"}},
        {"type": "text", "text": " Be brief."},
    ]});
    // OpenAI and Azure OpenAI: promptflow-tools' parse_chat shape; the system message stays text.
    for api_type in [None, Some("azure")] {
        let body = sent_body(&ctx, api_type, "red.png");
        assert_eq!(
            body["messages"],
            json!([{"role": "system", "content": "You describe images."}, openai_user]),
            "{api_type:?}: {body:#}"
        );
    }
    // Anthropic: image blocks with a base64 source.
    let body = sent_body(&ctx, Some("anthropic"), "red.png");
    assert_eq!(body["system"], json!("You describe images."));
    assert_eq!(
        body["messages"],
        json!([{"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                "data": STANDARD.encode(&bytes)}},
            {"type": "text", "text": " Be brief."},
        ]}]),
        "{body:#}"
    );
    // A URL is passed on as a URL (promptflow sends an image's source_url).
    let url = "https://example.com/cat.jpg";
    let body = sent_body(&ctx, None, url);
    assert_eq!(
        body["messages"][1]["content"][1],
        json!({"type": "image_url", "image_url": {"url": url, "detail": "auto"}})
    );
    let body = sent_body(&ctx, Some("anthropic"), url);
    assert_eq!(
        body["messages"][0]["content"][1],
        json!({"type": "image", "source": {"type": "url", "url": url}})
    );
}

const TOOL_FLOW: &str = r#"
inputs:
  img: {type: image}
outputs:
  info: {reference: '${look.output.info}'}
  picture: {reference: '${look.output.picture}'}
nodes:
- name: look
  type: python
  source: {type: code, path: look.py}
  inputs: {img: '${inputs.img}'}
"#;

const TOOL: &str = r#"
from promptflow import tool
from promptflow.contracts.multimedia import Image, PFBytes


@tool
def look(img: Image) -> dict:
    assert isinstance(img, Image) and isinstance(img, PFBytes), type(img)
    info = {
        "str": str(img),
        "mime": img._mime_type,
        "size": len(img),
        "uri_prefix": img.to_base64(with_type=True)[:22],
        "same": img.to_base64() == Image(bytes(img)).to_base64(),
        "source_url": img.source_url,
    }
    # a new image made by the tool: the same pixels, as promptflow's Image(bytes)
    return {"info": info, "picture": Image(bytes(img))}
"#;

fn tool_flow(ctx: &TestContext) -> Vec<u8> {
    let bytes = png(3, 2, [0, 128, 255]);
    ctx.flow("tool", &[("flow.dag.yaml", TOOL_FLOW), ("look.py", TOOL)]);
    std::fs::write(ctx.root().join("tool/blue.png"), &bytes).unwrap();
    std::fs::create_dir_all(ctx.root().join("data/pics")).unwrap();
    std::fs::write(ctx.root().join("data/pics/blue.png"), &bytes).unwrap();
    bytes
}

fn sha8(bytes: &[u8]) -> String {
    flow::image::sha1_hex(bytes)[..8].to_string()
}

#[test]
fn every_input_form_reaches_a_python_tool_as_an_image_and_outputs_are_files() {
    let ctx = TestContext::new();
    let bytes = tool_flow(&ctx);
    let b64 = STANDARD.encode(&bytes);
    // Plain paths are relative to the flow folder, `;path` dicts to the dataset's folder.
    let rows = [
        json!({"img": "blue.png"}),
        json!({"img": {"data:image/png;path": "pics/blue.png"}}),
        json!({"img": b64}),
        json!({"img": format!("data:image/png;base64,{b64}")}),
        json!({"img": {"data:image/png;base64": b64}}),
    ];
    let data: String = rows.iter().map(|r| format!("{r}\n")).collect();
    ctx.write("data/rows.jsonl", &data);
    let run = ctx.run(&["run", "tool", "--data", "data/rows.jsonl", "--name", "pics"]);
    run.expect_code(0);
    let outputs =
        std::fs::read_to_string(ctx.root().join(".flow/runs/pics/flow_outputs/output.jsonl"))
            .unwrap();
    let lines: Vec<Value> = outputs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), rows.len(), "{outputs}");
    let mut hex = String::new();
    for line in &lines {
        assert_eq!(
            line["info"],
            json!({
                "str": format!("Image({})", sha8(&bytes)),
                "mime": "image/png",
                "size": bytes.len(),
                "uri_prefix": "data:image/png;base64,",
                "same": true,
                "source_url": null,
            }),
            "{line}"
        );
        // The returned Image is a file next to output.jsonl, referred to relative to it.
        let path = line["picture"]["data:image/png;path"]
            .as_str()
            .unwrap_or_else(|| panic!("an image path: {line}"));
        assert!(
            path.starts_with("images/") && path.ends_with(".png"),
            "{path}"
        );
        let file = ctx.root().join(".flow/runs/pics/flow_outputs").join(path);
        assert_eq!(std::fs::read(&file).unwrap(), bytes, "{}", file.display());
        hex = path.to_string();
    }
    // The same image is one file; inputs are recorded as references too, never as base64.
    let images: Vec<_> = std::fs::read_dir(ctx.root().join(".flow/runs/pics/flow_outputs/images"))
        .unwrap()
        .collect();
    assert_eq!(images.len(), 1, "{hex}");
    let inputs = std::fs::read_to_string(ctx.root().join(".flow/runs/pics/inputs.jsonl")).unwrap();
    assert!(!inputs.contains(&b64), "{inputs}");
    assert!(inputs.contains(&hex), "{inputs}");

    // `flow run` on one input keeps the image under .promptflow/flow_outputs, as `pf flow test`.
    let run = ctx.run(&[
        "run",
        "tool",
        "--inputs",
        "img=blue.png",
        "--output",
        "json",
    ]);
    run.expect_code(0);
    let out = run.json();
    let path = out["outputs"]["picture"]["data:image/png;path"]
        .as_str()
        .unwrap_or_else(|| panic!("{out:#}"));
    assert!(path.starts_with("flow_outputs/"), "{path}");
    assert_eq!(
        std::fs::read(ctx.root().join("tool/.promptflow").join(path)).unwrap(),
        bytes
    );
}

#[test]
fn bad_images_are_refused_before_anything_runs() {
    let ctx = TestContext::with_mock();
    vision_flow(&ctx);
    ctx.write("vision/notes.txt", "not an image");
    ctx.write(
        "data.jsonl",
        "{\"img\": \"red.png\"}\n{\"img\": {\"data:image/png;path\": \"gone.png\"}}\n",
    );
    let run = ctx.run(&["run", "vision", "--data", "data.jsonl", "--name", "bad"]);
    run.expect_code(2);
    let err = &run.stderr;
    assert!(err.contains("data.jsonl:2: input `img`"), "{err}");
    assert!(err.contains("gone.png"), "{err}");
    assert!(err.contains("help:"), "{err}");
    ctx.write("data2.jsonl", "{\"img\": \"notes.txt\"}\n");
    let run = ctx.run(&["run", "vision", "--data", "data2.jsonl"]);
    run.expect_code(2);
    assert!(
        run.stderr.contains("data2.jsonl:1: input `img`"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("is not an image"), "{}", run.stderr);
    let run = ctx.run(&["run", "vision", "--inputs", "img=missing.png"]);
    run.expect_code(2);
    assert!(run.stderr.contains("--inputs img"), "{}", run.stderr);
    assert!(run.stderr.contains("missing.png"), "{}", run.stderr);
    assert_eq!(ctx.mock().request_count(), 0, "nothing was sent");
}

/// Headless Chromium on `url`: the DOM after the script ran, and a screenshot at `shot`.
fn chromium(url: &str, shot: &std::path::Path) -> String {
    let browser = std::env::var_os("FLOW_TEST_CHROMIUM")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from("/usr/bin/chromium"));
    assert!(
        browser.is_file(),
        "Chromium is required for the browser tests (apt-get install -y chromium, or set FLOW_TEST_CHROMIUM)"
    );
    let run = |extra: &[String]| {
        let profile = tempfile::tempdir().unwrap();
        let out = std::process::Command::new(&browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--window-size=1200,2600",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(extra)
            .arg(url)
            .stderr(std::process::Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "chromium exited with {}", out.status);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    run(&[format!("--screenshot={}", shot.display())]);
    run(&["--dump-dom".to_string()])
}

#[test]
fn the_report_shows_image_inputs_and_outputs_as_embedded_thumbnails() {
    let ctx = TestContext::new();
    let small = tool_flow(&ctx);
    // A large image (over the embedding cap) is named, not embedded.
    let big = png(400, 400, [0, 200, 0]);
    assert!(big.len() as u64 > flow::report::html::IMAGE_EMBED_CAP);
    std::fs::write(ctx.root().join("tool/big.png"), &big).unwrap();
    ctx.write(
        "data.jsonl",
        "{\"img\": \"blue.png\"}\n{\"img\": \"big.png\"}\n",
    );
    ctx.run(&["run", "tool", "--data", "data.jsonl", "--name", "pics"])
        .expect_code(0);
    ctx.run(&["report", "pics", "-o", "report.html"])
        .expect_code(0);
    let html = std::fs::read_to_string(ctx.root().join("report.html")).unwrap();
    let small_uri = format!("data:image/png;base64,{}", STANDARD.encode(&small));
    assert!(html.contains(&small_uri), "the small image is embedded");
    assert!(!html.contains(&STANDARD.encode(&big)), "the big one is not");
    let shot = ctx.root().join("report.png");
    let dom = chromium(
        &format!("file://{}", ctx.root().join("report.html").display()),
        &shot,
    );
    // Line 0: input and output thumbnails of the small image; line 1: the cap is said.
    let imgs = dom.matches("<img src=\"data:image/png;base64,").count();
    assert_eq!(imgs, 2, "{dom}");
    assert!(dom.contains("image not embedded"), "{dom}");
    assert!(dom.contains("KiB cap"), "{dom}");
    assert!(shot.is_file());
    if let Some(keep) = std::env::var_os("FLOW_TEST_KEEP_SCREENSHOT") {
        std::fs::copy(&shot, keep).unwrap();
    }
}

#[test]
fn a_prompty_sends_its_images_as_content_parts() {
    let ctx = TestContext::with_mock();
    let bytes = png(1, 1, [9, 9, 9]);
    ctx.write(
        "p/look.prompty",
        "---\nname: look\nmodel:\n  api: chat\n  configuration: {type: openai, connection: open_ai_connection, model: gpt-4o}\ninputs:\n  img: {type: image}\n---\nsystem:\nYou see.\nuser:\nWhat colour?\n![image]({{img}})\n",
    );
    std::fs::write(ctx.root().join("p/grey.png"), &bytes).unwrap();
    let run = ctx.run(&["run", "p/look.prompty", "--inputs", "img=grey.png"]);
    run.expect_code(0);
    let body = &ctx.mock().requests()[0].body;
    assert_eq!(
        body["messages"][1],
        json!({"role": "user", "content": [
            {"type": "text", "text": "What colour?"},
            {"type": "image_url", "image_url": {
                "url": format!("data:image/png;base64,{}", STANDARD.encode(&bytes)),
                "detail": "auto"}},
        ]}),
        "{body:#}"
    );
}

#[test]
fn an_image_output_feeds_a_later_run_through_run_outputs() {
    let ctx = TestContext::new();
    let bytes = tool_flow(&ctx);
    ctx.write("data.jsonl", "{\"img\": \"blue.png\"}\n");
    ctx.run(&["run", "tool", "--data", "data.jsonl", "--name", "first"])
        .expect_code(0);
    // The second run reads the first's image output (a path relative to its flow_outputs/).
    ctx.run(&[
        "run",
        "tool",
        "--data",
        "data.jsonl",
        "--run",
        "first",
        "--column-mapping",
        "img=${run.outputs.picture}",
        "--name",
        "second",
    ])
    .expect_code(0);
    let out = std::fs::read_to_string(
        ctx.root()
            .join(".flow/runs/second/flow_outputs/output.jsonl"),
    )
    .unwrap();
    let line: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(line["info"]["size"], json!(bytes.len()), "{line}");
}

#[test]
fn a_served_flow_takes_images_inline_never_as_a_server_file() {
    use crate::support::server::Server;
    let ctx = TestContext::with_mock();
    let bytes = vision_flow(&ctx);
    let server = Server::ready(&ctx, "vision", &[], &[]);
    for body in [
        json!({"img": "red.png"}),
        json!({"img": {"data:image/png;path": "/etc/hostname"}}),
    ] {
        let a = server.post("/score", &[], &body.to_string());
        assert_eq!(a.status, 400, "{body}: {}", a.body);
        assert!(
            a.body.contains("never a file path on the server"),
            "{}",
            a.body
        );
    }
    assert_eq!(ctx.mock().request_count(), 0);
    let a = server.post(
        "/score",
        &[],
        &json!({"img": {"data:image/png;base64": STANDARD.encode(&bytes)}}).to_string(),
    );
    assert_eq!(a.status, 200, "{}", a.body);
    let sent = &ctx.mock().requests()[0].body;
    assert_eq!(
        sent["messages"][1]["content"][1]["type"], "image_url",
        "{sent:#}"
    );
}

#[test]
fn a_tool_never_fetches_an_image_from_a_private_address() {
    let ctx = TestContext::with_mock();
    tool_flow(&ctx);
    let url = format!("{}/cat.png", ctx.mock().url());
    let run = ctx.run(&["run", "tool", "--inputs", &format!("img={url}")]);
    run.expect_code(1);
    assert!(
        run.stderr.contains("is not a public address"),
        "{}",
        run.stderr
    );
    assert_eq!(ctx.mock().request_count(), 0, "nothing was fetched");
}

#[test]
fn a_literal_given_to_an_image_parameter_is_loaded_as_an_image_before_the_run() {
    let ctx = TestContext::new();
    let logo = png(2, 2, [0, 0, 255]);
    ctx.flow(
        "lit",
        &[
            (
                "flow.dag.yaml",
                "inputs: {}\noutputs:\n  size: {reference: '${describe.output}'}\nnodes:\n- {name: describe, type: python, source: {type: code, path: describe.py}, inputs: {image: logo.png}}\n",
            ),
            (
                "describe.py",
                "from promptflow.contracts.multimedia import Image\nfrom promptflow.core import tool\n\n@tool\ndef describe(image: Image) -> str:\n    return f'{type(image).__name__} {image._mime_type} {len(bytes(image))}'\n",
            ),
        ],
    );
    std::fs::write(ctx.root().join("lit/logo.png"), &logo).unwrap();
    let run = ctx.run(&["run", "lit", "--output", "json"]);
    run.expect_code(0);
    assert_eq!(
        run.json()["outputs"]["size"],
        format!("Image image/png {}", logo.len())
    );
    // a literal that is no image is refused at its place before anything runs
    ctx.write(
        "lit/flow.dag.yaml",
        "inputs: {}\noutputs:\n  size: {reference: '${describe.output}'}\nnodes:\n- {name: describe, type: python, source: {type: code, path: describe.py}, inputs: {image: gone.png}}\n",
    );
    ctx.run(&["run", "lit"])
        .expect_code(2)
        .stderr_has("input `image` is an `Image` parameter, and its value is not an image")
        .stderr_has("gone.png")
        .stderr_has("flow.dag.yaml:5");
}

#[test]
fn an_aggregation_of_a_single_run_gets_the_lines_images_not_paths_it_cannot_open() {
    let ctx = TestContext::new();
    let logo = png(3, 1, [9, 9, 9]);
    ctx.flow(
        "agg",
        &[
            (
                "flow.dag.yaml",
                "inputs:\n  image: {type: image, default: logo.png}\noutputs:\n  out: {reference: '${pick.output}'}\nnodes:\n- {name: pick, type: python, source: {type: code, path: pick.py}, inputs: {image: '${inputs.image}'}}\n- {name: count, type: python, source: {type: code, path: count.py}, inputs: {images: '${pick.output}'}, aggregation: true}\n",
            ),
            (
                "pick.py",
                "from promptflow.contracts.multimedia import Image\nfrom promptflow.core import tool\n\n@tool\ndef pick(image: Image) -> Image:\n    return image\n",
            ),
            (
                "count.py",
                "from promptflow.core import log_metric, tool\n\n@tool\ndef count(images: list):\n    log_metric('bytes', sum(len(bytes(i)) for i in images))\n",
            ),
        ],
    );
    std::fs::write(ctx.root().join("agg/logo.png"), &logo).unwrap();
    let run = ctx.run(&["run", "agg", "--output", "json"]);
    run.expect_code(0);
    assert_eq!(run.json()["metrics"]["bytes"], logo.len() as f64);
    // the line's output is still written as a file, as pf flow test writes it
    let out = &run.json()["outputs"]["out"];
    assert!(
        out.get("data:image/png;path").is_some(),
        "an image output is a path reference: {out}"
    );
}

#[test]
fn merged_shards_keep_their_image_files_and_the_aggregation_opens_them() {
    let ctx = TestContext::new();
    ctx.flow(
        "agg",
        &[
            (
                "flow.dag.yaml",
                "inputs:\n  image: {type: image}\noutputs:\n  out: {reference: '${pick.output}'}\nnodes:\n- {name: pick, type: python, source: {type: code, path: pick.py}, inputs: {image: '${inputs.image}'}}\n- {name: count, type: python, source: {type: code, path: count.py}, inputs: {images: '${pick.output}'}, aggregation: true}\n",
            ),
            (
                "pick.py",
                "from promptflow.contracts.multimedia import Image\nfrom promptflow.core import tool\n\n@tool\ndef pick(image: Image) -> Image:\n    return image\n",
            ),
            (
                "count.py",
                "from promptflow.core import log_metric, tool\n\n@tool\ndef count(images: list):\n    log_metric('bytes', sum(len(bytes(i)) for i in images))\n",
            ),
        ],
    );
    let (a, b) = (png(2, 2, [1, 2, 3]), png(3, 3, [4, 5, 6]));
    std::fs::write(ctx.root().join("a.png"), &a).unwrap();
    std::fs::write(ctx.root().join("b.png"), &b).unwrap();
    ctx.write(
        "data.jsonl",
        "{\"image\": {\"data:image/png;path\": \"a.png\"}}\n{\"image\": {\"data:image/png;path\": \"b.png\"}}\n",
    );
    for k in ["1/2", "2/2"] {
        ctx.run(&[
            "run",
            "agg",
            "--data",
            "data.jsonl",
            "--name",
            "s",
            "--shard",
            k,
        ])
        .expect_code(0);
    }
    ctx.run(&[
        "runs",
        "merge",
        "s-shard-1-of-2",
        "s-shard-2-of-2",
        "--name",
        "m",
    ])
    .expect_code(0);
    let metrics: Value = serde_json::from_str(
        &std::fs::read_to_string(ctx.root().join(".flow/runs/m/metrics.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(metrics["bytes"], (a.len() + b.len()) as f64, "{metrics}");
    // every image the merged run's outputs refer to is in its own folder
    let outputs =
        std::fs::read_to_string(ctx.root().join(".flow/runs/m/flow_outputs/output.jsonl")).unwrap();
    for line in outputs.lines() {
        let row: Value = serde_json::from_str(line).unwrap();
        let path = row["out"]["data:image/png;path"].as_str().unwrap();
        assert!(
            ctx.root()
                .join(".flow/runs/m/flow_outputs")
                .join(path)
                .is_file(),
            "{path} is missing from the merged run"
        );
    }
}

// --- message_format: openai-vision (promptflow's OpenaiVisionMultimediaProcessor) ---------------

/// Bytes that start as a JPEG does (what promptflow and `flow` read a type from), so the
/// `.jpg` naming and the `image/jpeg` type are exercised next to the PNGs.
fn jpeg(seed: u8) -> Vec<u8> {
    let mut b = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00".to_vec();
    b.extend(std::iter::repeat_n(seed, 64));
    b.extend_from_slice(b"\xff\xd9");
    b
}

/// promptflow's `chat_flow_with_openai_vision_image`, with a text part in the question.
const VISION_CHAT_FLOW: &str = r#"message_format: openai-vision
inputs:
  chat_history:
    type: list
    default:
    - inputs:
        question:
        - the first question
        - type: image_file
          image_file:
            path: logo.jpg
      outputs:
        answer:
        - type: image_file
          image_file:
            path: logo.jpg
    is_chat_history: true
  question:
    type: list
    default:
    - type: text
      text: the third question
    - type: image_file
      image_file:
        path: logo.jpg
    - type: image_file
      image_file:
        path: logo_2.png
    is_chat_input: true
outputs:
  answer:
    type: string
    reference: ${mock_chat_node.output}
    is_chat_output: true
nodes:
- name: mock_chat_node
  type: python
  source:
    type: code
    path: mock_chat.py
  inputs:
    chat_history: ${inputs.chat_history}
    question: ${inputs.question}
"#;

const VISION_CHAT_TOOL: &str = r#"
from promptflow.core import tool
from promptflow.contracts.multimedia import Image, Text


@tool
def mock_chat(chat_history: list, question: list):
    ensure_image_in_list(question, "question")
    for item in chat_history:
        ensure_image_in_list(item["inputs"]["question"], "inputs of chat history")
        ensure_image_in_list(item["outputs"]["answer"], "outputs of chat history")
    texts = [item for item in question if isinstance(item, Text)]
    assert texts == ["the third question"] and isinstance(texts[0], str), question
    res = [item for item in question if isinstance(item, Image)]
    res.append("text response")
    res.append(texts[0])
    return res


def ensure_image_in_list(value: list, name: str):
    if not any(isinstance(item, Image) for item in value):
        raise Exception(f"No image found in {name}, you should include at least one image in your {name}.")
"#;

/// The image a `{"type": "image_file", ...}` reference names, under `base`.
fn image_file(reference: &Value, base: &std::path::Path) -> Vec<u8> {
    assert_eq!(reference["type"], "image_file", "{reference}");
    assert_eq!(
        reference.as_object().map(|m| m.len()),
        Some(2),
        "{reference}"
    );
    let path = reference["image_file"]["path"]
        .as_str()
        .unwrap_or_else(|| panic!("a path: {reference}"));
    std::fs::read(base.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn an_openai_vision_chat_flow_gives_its_python_tool_images_and_texts_and_records_them_in_its_shape()
{
    let ctx = TestContext::new();
    let (logo, logo_2) = (jpeg(7), png(2, 3, [10, 20, 30]));
    ctx.flow(
        "chat",
        &[
            ("flow.dag.yaml", VISION_CHAT_FLOW),
            ("mock_chat.py", VISION_CHAT_TOOL),
        ],
    );
    std::fs::write(ctx.root().join("chat/logo.jpg"), &logo).unwrap();
    std::fs::write(ctx.root().join("chat/logo_2.png"), &logo_2).unwrap();

    // one line, on the defaults: as `pf flow test`, under .promptflow/flow_outputs
    let run = ctx.run(&["run", "chat", "--output", "json"]);
    run.expect_code(0);
    let answer = run.json()["outputs"]["answer"].clone();
    let records = ctx.root().join("chat/.promptflow");
    assert_eq!(answer.as_array().map(Vec::len), Some(4), "{answer:#}");
    assert_eq!(image_file(&answer[0], &records), logo);
    assert_eq!(image_file(&answer[1], &records), logo_2);
    let first = answer[0]["image_file"]["path"].as_str().unwrap_or_default();
    assert!(
        first.starts_with("flow_outputs/") && first.ends_with(".jpg"),
        "{first}"
    );
    assert_eq!(answer[2], json!("text response"));
    // a Text the tool returns goes back as promptflow's text part
    assert_eq!(
        answer[3],
        json!({"type": "text", "text": "the third question"})
    );

    // a batch: image_file paths in the dataset are relative to its folder, image_url takes a
    // data URI; the records refer to the files under flow_outputs/ in the same shape
    std::fs::create_dir_all(ctx.root().join("data/pics")).unwrap();
    std::fs::write(ctx.root().join("data/pics/a.jpg"), &logo).unwrap();
    let uri = format!("data:image/png;base64,{}", STANDARD.encode(&logo_2));
    let row = json!({
        "chat_history": [{
            "inputs": {"question": ["q1", {"type": "image_file", "image_file": {"path": "pics/a.jpg"}}]},
            "outputs": {"answer": [{"type": "image_url", "image_url": {"url": uri}}]},
        }],
        "question": [{"type": "text", "text": "the third question"},
                     {"type": "image_url", "image_url": {"url": uri}}],
    });
    ctx.write("data/rows.jsonl", &format!("{row}\n"));
    ctx.run(&["run", "chat", "--data", "data/rows.jsonl", "--name", "v"])
        .expect_code(0);
    let run_dir = ctx.root().join(".flow/runs/v");
    let outputs = std::fs::read_to_string(run_dir.join("flow_outputs/output.jsonl")).unwrap();
    let line: Value = serde_json::from_str(outputs.trim()).unwrap();
    let answer = &line["answer"];
    let base = run_dir.join("flow_outputs");
    assert_eq!(image_file(&answer[0], &base), logo_2, "{line}");
    let path = answer[0]["image_file"]["path"].as_str().unwrap_or_default();
    assert!(
        path.starts_with("images/") && path.ends_with(".png"),
        "{path}"
    );
    assert_eq!(
        &answer.as_array().unwrap()[1..],
        &[
            json!("text response"),
            json!({"type": "text", "text": "the third question"})
        ]
    );
    let inputs = std::fs::read_to_string(run_dir.join("inputs.jsonl")).unwrap();
    let recorded: Value = serde_json::from_str(inputs.trim()).unwrap();
    let history = &recorded["chat_history"][0];
    assert_eq!(image_file(&history["inputs"]["question"][1], &base), logo);
    assert_eq!(image_file(&history["outputs"]["answer"][0], &base), logo_2);
    assert!(!inputs.contains(&STANDARD.encode(&logo_2)), "{inputs}");
}

const VISION_TEMPLATE_CHAT: &str = "# system:\nYou see.\n{% for item in chat_history %}\n# user:\n{% for part in item.inputs.question %}{{part}}\n{% endfor %}\n# assistant:\n{{item.outputs.answer}}\n{% endfor %}\n# user:\n{% for part in question %}{{part}}\n{% endfor %}\n";

#[test]
fn an_openai_vision_llm_node_sends_its_images_and_chat_history_as_content_parts() {
    let ctx = TestContext::with_mock();
    let (red, blue) = (png(1, 1, [255, 0, 0]), png(1, 1, [0, 0, 255]));
    ctx.flow(
        "ask",
        &[
            (
                "flow.dag.yaml",
                "message_format: openai-vision\ninputs:\n  chat_history: {type: list, default: [], is_chat_history: true}\n  question: {type: list, is_chat_input: true}\noutputs:\n  answer: {reference: '${ask.output}', is_chat_output: true}\nnodes:\n- name: ask\n  type: llm\n  source: {type: code, path: ask.jinja2}\n  connection: open_ai_connection\n  api: chat\n  inputs: {model: gpt-4o, deployment_name: gpt-4o, chat_history: '${inputs.chat_history}', question: '${inputs.question}'}\n",
            ),
            ("ask.jinja2", VISION_TEMPLATE_CHAT),
        ],
    );
    std::fs::write(ctx.root().join("ask/blue.png"), &blue).unwrap();
    let red_uri = format!("data:image/png;base64,{}", STANDARD.encode(&red));
    let blue_uri = format!("data:image/png;base64,{}", STANDARD.encode(&blue));
    let cat = "https://example.com/cat.jpg";
    ctx.write(
        "inputs.json",
        &json!({
            "chat_history": [{
                "inputs": {"question": [{"type": "text", "text": "what is this?"},
                                        {"type": "image_url", "image_url": {"url": red_uri}}]},
                "outputs": {"answer": "a red square"},
            }],
            "question": ["and these?",
                         {"type": "image_file", "image_file": {"path": "blue.png"}},
                         {"type": "image_url", "image_url": {"url": cat}}],
        })
        .to_string(),
    );
    ctx.mock()
        .push(crate::support::mock_llm::MockReply::text("text response"));
    let run = ctx.run(&["run", "ask", "--inputs", "inputs.json", "--output", "json"]);
    run.expect_code(0);
    assert_eq!(run.json()["outputs"]["answer"], json!("text response"));
    let body = &ctx.mock().requests()[0].body;
    let part =
        |url: &str| json!({"type": "image_url", "image_url": {"url": url, "detail": "auto"}});
    assert_eq!(
        body["messages"],
        json!([
            {"role": "system", "content": "You see."},
            {"role": "user", "content": [{"type": "text", "text": "what is this?"}, part(&red_uri)]},
            {"role": "assistant", "content": "a red square"},
            {"role": "user", "content": [{"type": "text", "text": "and these?"}, part(&blue_uri), part(cat)]},
        ]),
        "{body:#}"
    );
}

/// promptflow's `python_tool_with_openai_vision_image` (one image picked twice), with an
/// aggregation node that opens every line's image.
const VISION_PICK_FLOW: &str = r#"inputs:
  image:
    type: image
    default: logo.jpg
outputs:
  output:
    type: image
    reference: ${python_node_2.output}
    is_chat_output: true
nodes:
  - name: python_node
    type: python
    source:
      type: code
      path: pick_an_image.py
    inputs:
      image_1: ${inputs.image}
      image_2: ${inputs.image}
  - name: python_node_2
    type: python
    source:
      type: code
      path: pick_an_image.py
    inputs:
      image_1: ${python_node.output}
      image_2: ${python_node.output}
  - name: count
    type: python
    source:
      type: code
      path: count.py
    inputs:
      images: ${python_node_2.output}
    aggregation: true
message_format: openai-vision
"#;

const PICK_AN_IMAGE: &str = "import random\n\nfrom promptflow.contracts.multimedia import Image\nfrom promptflow import tool\n\n\n@tool\ndef pick_an_image(image_1: Image, image_2: Image) -> Image:\n    assert isinstance(image_1, Image) and isinstance(image_2, Image), (type(image_1), type(image_2))\n    if random.choice([True, False]):\n        return image_1\n    else:\n        return image_2\n";

const COUNT_IMAGES: &str = "from promptflow.contracts.multimedia import Image\nfrom promptflow.core import log_metric, tool\n\n@tool\ndef count(images: list):\n    assert all(isinstance(i, Image) for i in images), [type(i) for i in images]\n    log_metric('bytes', sum(len(bytes(i)) for i in images))\n    log_metric('images', len(images))\n";

fn vision_pick_flow(ctx: &TestContext) -> Vec<u8> {
    let logo = jpeg(3);
    ctx.flow(
        "pick",
        &[
            ("flow.dag.yaml", VISION_PICK_FLOW),
            ("pick_an_image.py", PICK_AN_IMAGE),
            ("count.py", COUNT_IMAGES),
        ],
    );
    std::fs::write(ctx.root().join("pick/logo.jpg"), &logo).unwrap();
    logo
}

#[test]
fn an_openai_vision_image_input_takes_every_form_and_its_output_is_an_image_file_reference() {
    let ctx = TestContext::new();
    let logo = vision_pick_flow(&ctx);
    let run = ctx.run(&["run", "pick", "--output", "json"]);
    run.expect_code(0);
    let out = run.json();
    assert_eq!(
        image_file(
            &out["outputs"]["output"],
            &ctx.root().join("pick/.promptflow")
        ),
        logo
    );
    assert_eq!(out["metrics"]["bytes"], logo.len() as f64, "{out:#}");

    let blue = png(3, 2, [0, 128, 255]);
    let b64 = STANDARD.encode(&blue);
    std::fs::create_dir_all(ctx.root().join("data/pics")).unwrap();
    std::fs::write(ctx.root().join("data/pics/blue.png"), &blue).unwrap();
    std::fs::write(ctx.root().join("pick/blue.png"), &blue).unwrap();
    let rows = [
        json!({"image": {"type": "image_file", "image_file": {"path": "pics/blue.png"}}}),
        json!({"image": {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{b64}")}}}),
        json!({"image": {"type": "image_url", "image_url": {"url": b64}}}),
        json!({"image": "blue.png"}),
        json!({"image": format!("data:image/png;base64,{b64}")}),
    ];
    let data: String = rows.iter().map(|r| format!("{r}\n")).collect();
    ctx.write("data/rows.jsonl", &data);
    ctx.run(&["run", "pick", "--data", "data/rows.jsonl", "--name", "v"])
        .expect_code(0);
    let run_dir = ctx.root().join(".flow/runs/v");
    let outputs = std::fs::read_to_string(run_dir.join("flow_outputs/output.jsonl")).unwrap();
    let lines: Vec<Value> = outputs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), rows.len(), "{outputs}");
    for line in &lines {
        assert_eq!(
            image_file(&line["output"], &run_dir.join("flow_outputs")),
            blue,
            "{line}"
        );
    }
    let metrics: Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("metrics.json")).unwrap())
            .unwrap();
    assert_eq!(metrics["images"], rows.len() as f64, "{metrics}");

    // the report embeds the input and output thumbnails it finds through those references
    ctx.run(&["report", "v", "-o", "report.html"])
        .expect_code(0);
    let html = std::fs::read_to_string(ctx.root().join("report.html")).unwrap();
    assert!(
        html.contains(&format!("data:image/png;base64,{b64}")),
        "the thumbnail is embedded"
    );
    assert!(
        !html.contains("image not found"),
        "every reference was found"
    );
}

#[test]
fn merged_and_resumed_openai_vision_runs_open_their_image_files_for_the_aggregation() {
    let ctx = TestContext::new();
    vision_pick_flow(&ctx);
    let (a, b) = (png(2, 2, [1, 2, 3]), png(3, 3, [4, 5, 6]));
    std::fs::write(ctx.root().join("a.png"), &a).unwrap();
    std::fs::write(ctx.root().join("b.png"), &b).unwrap();
    ctx.write(
        "data.jsonl",
        &format!(
            "{}\n{}\n",
            json!({"image": {"type": "image_file", "image_file": {"path": "a.png"}}}),
            json!({"image": {"type": "image_file", "image_file": {"path": "b.png"}}})
        ),
    );
    for k in ["1/2", "2/2"] {
        ctx.run(&[
            "run",
            "pick",
            "--data",
            "data.jsonl",
            "--name",
            "s",
            "--shard",
            k,
        ])
        .expect_code(0);
    }
    ctx.run(&[
        "runs",
        "merge",
        "s-shard-1-of-2",
        "s-shard-2-of-2",
        "--name",
        "m",
    ])
    .expect_code(0);
    let m = ctx.root().join(".flow/runs/m");
    let metrics: Value =
        serde_json::from_str(&std::fs::read_to_string(m.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(metrics["bytes"], (a.len() + b.len()) as f64, "{metrics}");
    let outputs = std::fs::read_to_string(m.join("flow_outputs/output.jsonl")).unwrap();
    let mut seen: Vec<Vec<u8>> = outputs
        .lines()
        .map(|l| {
            image_file(
                &serde_json::from_str::<Value>(l).unwrap()["output"],
                &m.join("flow_outputs"),
            )
        })
        .collect();
    seen.sort();
    let mut want = vec![a.clone(), b.clone()];
    want.sort();
    assert_eq!(seen, want);

    // a resumed run: line 1 fails once, the resume runs it alone, and the aggregation opens
    // line 0's image from the records
    ctx.write(
        "pick/pick_an_image.py",
        &PICK_AN_IMAGE.replace(
            "    if random.choice",
            "    import os\n    if len(bytes(image_1)) == LEN and os.path.exists(os.path.join(os.path.dirname(__file__), 'fail')):\n        raise ValueError('failing once')\n    if random.choice",
        )
        .replace("LEN", &b.len().to_string()),
    );
    ctx.write("pick/fail", "");
    ctx.run(&["run", "pick", "--data", "data.jsonl", "--name", "r"])
        .expect_code(1);
    std::fs::remove_file(ctx.root().join("pick/fail")).unwrap();
    ctx.run(&["run", "--resume", "r"]).expect_code(0);
    let metrics: Value = serde_json::from_str(
        &std::fs::read_to_string(ctx.root().join(".flow/runs/r/metrics.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(metrics["bytes"], (a.len() + b.len()) as f64, "{metrics}");
    assert_eq!(metrics["images"], 2.0, "{metrics}");
}

#[test]
fn a_served_openai_vision_flow_answers_image_url_parts_and_never_reads_a_server_file() {
    use crate::support::server::Server;
    let ctx = TestContext::new();
    vision_pick_flow(&ctx);
    let blue = png(1, 2, [0, 0, 255]);
    let uri = format!("data:image/png;base64,{}", STANDARD.encode(&blue));
    let server = Server::ready(&ctx, "pick", &[], &[]);
    for body in [
        json!({"image": {"type": "image_file", "image_file": {"path": "/etc/hostname"}}}),
        json!({"image": "logo.jpg"}),
    ] {
        let a = server.post("/score", &[], &body.to_string());
        assert_eq!(a.status, 400, "{body}: {}", a.body);
        assert!(
            a.body.contains("never a file path on the server"),
            "{}",
            a.body
        );
    }
    let a = server.post(
        "/score",
        &[],
        &json!({"image": {"type": "image_url", "image_url": {"url": uri}}}).to_string(),
    );
    assert_eq!(a.status, 200, "{}", a.body);
    let answer: Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(
        answer,
        json!({"output": {"type": "image_url", "image_url": {"url": uri}}})
    );
}

#[test]
fn an_openai_vision_flow_refuses_basic_image_dicts_and_bad_image_urls_before_anything_runs() {
    let ctx = TestContext::new();
    vision_pick_flow(&ctx);
    ctx.flow(
        "chat",
        &[
            ("flow.dag.yaml", VISION_CHAT_FLOW),
            ("mock_chat.py", VISION_CHAT_TOOL),
        ],
    );
    // an image input given promptflow's basic dict: not an image in this format
    ctx.write(
        "basic.json",
        &json!({"image": {"data:image/png;base64": STANDARD.encode(png(1, 1, [0, 0, 0]))}})
            .to_string(),
    );
    ctx.run(&["run", "pick", "--inputs", "basic.json"])
        .expect_code(2)
        .stderr_has("--inputs image")
        .stderr_has("{\"type\": \"image_file\"");
    // inside a list: promptflow would pass it on as a plain dict; refused, not guessed
    ctx.write(
        "nested.json",
        &json!({"question": ["q", {"data:image/png;path": "logo.jpg"}]}).to_string(),
    );
    ctx.run(&["run", "chat", "--inputs", "nested.json"])
        .expect_code(2)
        .stderr_has("is a basic image dictionary in a flow with `message_format: openai-vision`");
    // a dataset row whose url is neither a URL nor base64, located by row
    ctx.write(
        "data.jsonl",
        &format!(
            "{}\n{}\n",
            json!({"image": "logo.jpg"}),
            json!({"image": {"type": "image_url", "image_url": {"url": "not a url"}}})
        ),
    );
    ctx.run(&["run", "pick", "--data", "data.jsonl"])
        .expect_code(2)
        .stderr_has("data.jsonl:2: input `image`")
        .stderr_has("invalid image url");
    assert!(
        !ctx.root().join(".flow/runs").exists(),
        "no run was started"
    );
}
