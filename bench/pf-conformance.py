#!/usr/bin/env python3
"""Measure `flow` against promptflow's own flows: run every flow of a promptflow checkout with
promptflow's `pf flow test` and with `flow run`, against the same loopback mock LLM and the same
inputs, and compare.

    bench/pf-conformance.py PROMPTFLOW_DIR [--flow-bin target/debug/flow] [--pf pf]
                            [--only SUBSTRING] [--out results.jsonl] [--jobs 4]
                            [--reuse-pf earlier.jsonl]

PROMPTFLOW_DIR is a checkout of microsoft/promptflow (only `examples/flows` and
`src/promptflow/tests/test_configs/{flows,eager_flows,prompty}` are read). `pf` must be installed
(`python3 -m venv v && v/bin/pip install promptflow promptflow-tools keyrings.alt`).

A flow counts when promptflow runs it here (with the mock, no third-party service or package
missing): `flow` then passes when it runs it too and gives the same outputs, or refuses it with a
located message (exit 2) — a refusal is counted separately, never as a pass. Flows promptflow
itself cannot run here are listed as "not counted" with promptflow's error.

Flows run in place (the checkout is used as a scratch copy: each tool's `.promptflow` is removed
before it runs, and a `flow.toml` is written at its root). The mock answers every chat request with
`MOCK_REPLY`, completions with the same text, embeddings with a fixed 8-number vector, streaming
when asked. Only the Python standard library is used.
"""

import argparse
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

MOCK_REPLY = "mock reply"
FLOW_FILES = ("flow.dag.yaml", "flow.dag.yml", "flow.flex.yaml", "flow.flex.yml")
ROOTS = (
    "examples/flows",
    "src/promptflow/tests/test_configs/flows",
    "src/promptflow/tests/test_configs/eager_flows",
    "src/promptflow/tests/test_configs/prompty",
)
TIMEOUT = 120

# --- the mock LLM --------------------------------------------------------------------------------


class Mock(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        self._json({"data": [{"id": "mock-model", "object": "model"}]})

    def do_POST(self):
        length = int(self.headers.get("content-length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            body = {}
        path = self.path.split("?")[0]
        usage = {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}
        if path.endswith("/embeddings"):
            inputs = body.get("input")
            n = len(inputs) if isinstance(inputs, list) else 1
            data = [{"object": "embedding", "index": i, "embedding": [0.125] * 8} for i in range(n)]
            return self._json({"object": "list", "data": data, "model": "mock", "usage": usage})
        chat = path.endswith("/chat/completions")
        n = int(body.get("n") or 1) if isinstance(body.get("n"), int) else 1
        if body.get("stream"):
            return self._stream(chat)
        if chat:
            choices = [
                {"index": i, "finish_reason": "stop", "message": {"role": "assistant", "content": MOCK_REPLY}}
                for i in range(n)
            ]
            obj = "chat.completion"
        else:
            choices = [{"index": i, "finish_reason": "stop", "text": MOCK_REPLY, "logprobs": None} for i in range(n)]
            obj = "text_completion"
        self._json({"id": "mock-1", "object": obj, "created": 0, "model": "mock", "choices": choices, "usage": usage})

    def _json(self, obj):
        data = json.dumps(obj).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _stream(self, chat):
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("connection", "close")
        self.end_headers()
        for word in ("mock", " reply"):
            if chat:
                choice = {"index": 0, "delta": {"role": "assistant", "content": word}, "finish_reason": None}
                chunk = {"id": "mock-1", "object": "chat.completion.chunk", "created": 0, "model": "mock"}
            else:
                choice = {"index": 0, "text": word, "finish_reason": None}
                chunk = {"id": "mock-1", "object": "text_completion", "created": 0, "model": "mock"}
            chunk["choices"] = [choice]
            self.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
        self.wfile.write(b"data: [DONE]\n\n")
        self.close_connection = True


def start_mock():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Mock)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server.server_address[1]


# --- connections ---------------------------------------------------------------------------------

AZURE = ["azure_open_ai_connection", "aoai_assistant_connection", "aoai_gpt4v_connection", "azure_openai"]
OPENAI = ["open_ai_connection", "your_open_ai_connection", "openai_connection"]
CUSTOM = {"custom_connection": {"key1": "hey", "key2": "val2"}, "basic_custom_connection": {"key1": "hey"}}


def connection_files(folder, base, key):
    """pf connection files for the common fixture connection names. `key` is the literal key (for
    pf) or a `${env:...}` reference (for flow, which takes secrets only by reference)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in AZURE:
        (folder / f"{name}.yaml").write_text(
            "$schema: https://azuremlschemas.azureedge.net/promptflow/latest/AzureOpenAIConnection.schema.json\n"
            f"name: {name}\ntype: azure_open_ai\napi_key: \"{key}\"\napi_base: {base}\n"
            "api_type: azure\napi_version: \"2024-02-01\"\n"
        )
    for name in OPENAI:
        (folder / f"{name}.yaml").write_text(
            "$schema: https://azuremlschemas.azureedge.net/promptflow/latest/OpenAIConnection.schema.json\n"
            f"name: {name}\ntype: open_ai\napi_key: \"{key}\"\nbase_url: {base}/v1\n"
        )
    for name, secrets in CUSTOM.items():
        by_ref = key.startswith("${env:")
        lines = "".join(
            f"  {k}: \"{'${env:MOCK_SECRET_' + k.upper() + '}' if by_ref else v}\"\n" for k, v in secrets.items()
        )
        (folder / f"{name}.yaml").write_text(
            "$schema: https://azuremlschemas.azureedge.net/promptflow/latest/CustomConnection.schema.json\n"
            f"name: {name}\ntype: custom\nconfigs:\n  endpoint: {base}\nsecrets:\n{lines}"
        )


# --- flows and their inputs ----------------------------------------------------------------------


def find_flows(root):
    flows = []
    for sub in ROOTS:
        base = root / sub
        if not base.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__pycache__")
            here = Path(dirpath)
            flow_files = [f for f in FLOW_FILES if f in filenames]
            if flow_files:
                flows.append(here / flow_files[0])
                dirnames[:] = []
                continue
            for f in sorted(filenames):
                if f.endswith(".prompty"):
                    flows.append(here / f)
    return flows


def sample_inputs(flow_path):
    """The inputs a developer would test with: the folder's samples.json, else the first line
    of its data.jsonl / inputs.jsonl, else none (the flow's defaults)."""
    folder = flow_path.parent
    for name in ("samples.json", "sample.json"):
        p = folder / name
        if p.is_file():
            try:
                data = json.loads(p.read_text())
            except ValueError:
                continue
            if isinstance(data, list) and data and isinstance(data[0], dict):
                return data[0]
            if isinstance(data, dict):
                return data
    for name in ("data.jsonl", "inputs.jsonl", "input.jsonl"):
        p = folder / name
        if p.is_file():
            for line in p.read_text().splitlines():
                if line.strip():
                    try:
                        row = json.loads(line)
                    except ValueError:
                        break
                    if isinstance(row, dict):
                        return row
                    break
    return {}


def init_args(flow_path):
    p = flow_path.parent / "init.json"
    if p.is_file() and flow_path.name.startswith("flow.flex"):
        return p
    return None


# --- running -------------------------------------------------------------------------------------


def run(cmd, cwd, env):
    start = time.monotonic()
    try:
        p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT)
        return p.returncode, p.stdout, p.stderr, time.monotonic() - start
    except subprocess.TimeoutExpired as e:
        text = lambda b: b.decode("utf-8", "replace") if isinstance(b, bytes) else (b or "")  # noqa: E731
        return -1, text(e.stdout), text(e.stderr) + "\n(timed out)", TIMEOUT


def clean(flow_path):
    """Remove what an earlier run left in the flow's folder."""
    shutil.rmtree(flow_path.parent / ".promptflow", ignore_errors=True)


def pf_test(pf, flow_path, inputs, init, env, work):
    clean(flow_path)
    copied = flow_path
    cmd = [pf, "flow", "test", "--flow", str(copied if copied.suffix == ".prompty" else copied.parent)]
    if inputs:
        data = work / "pf-inputs.jsonl"
        data.write_text(json.dumps(inputs) + "\n")
        cmd += ["--input", str(data)]
    if init:
        cmd += ["--init", str(init)]
    code, out, err, secs = run(cmd, flow_path.parent, env)
    outputs = None
    out_file = copied.parent / ".promptflow" / "flow.output.json"
    if copied.suffix == ".prompty":
        # pf keeps a .prompty's records in a folder named after it
        out_file = copied.parent / ".promptflow" / copied.stem / "flow.output.json"
    if code == 0 and out_file.is_file():
        try:
            outputs = json.loads(out_file.read_text())
        except ValueError:
            outputs = None
    return code, outputs, (out or "") + "\n" + (err or ""), secs


def flow_run(flow_bin, flow_path, inputs, init, conn_dir, env, work):
    clean(flow_path)
    copied = flow_path
    cmd = [flow_bin, "run", str(copied if copied.suffix == ".prompty" else copied.parent), "--output", "json"]
    cmd += ["--connections", str(conn_dir)]
    if inputs:
        data = work / "flow-inputs.json"
        data.write_text(json.dumps(inputs))
        cmd += ["--inputs", str(data)]
    if init:
        cmd += ["--init", str(init)]
    code, out, err, secs = run(cmd, flow_path.parent, env)
    outputs = None
    if code == 0:
        try:
            doc = json.loads(out)
            outputs = doc.get("outputs", doc) if isinstance(doc, dict) else doc
        except ValueError:
            outputs = None
    return code, outputs, err, secs


# Fixtures whose outputs change from run to run under promptflow itself: `id()` of an object,
# `random.choice` between two images or two branches.
NONDETERMINISTIC = {
    "basic_callable_class",
    "basic_callable_class_without_yaml",
    "python_tool_with_simple_image",
    "python_tool_with_simple_image_with_default",
    "conditional-flow-for-if-else",
    # `root-run-id` is the line run's UUID, new on every run
    "flow_with_operation_context",
}
# Fixtures that raise `ValueError("Random failure")` at random: when flow's run is the one that
# drew the failure, the flow is not counted (promptflow drew a success).
RANDOM_FAILURE = {"simple_with_random_fail", "eval_flow_with_image_resume_random_fail"}
# Fixtures flow handles differently on purpose (docs/flows.md, "Deliberate differences"): an
# aggregation node that raises fails `flow run` (exit 1), where `pf flow test` logs it and exits 0.
DELIBERATE = {"aggregation_node_failed", "conditional_flow_with_aggregate_bypassed"}


def normalize(value, nan_as_null=False):
    """Outputs as compared: the mock's port (it changes between measurements) and the file names
    of saved images (promptflow names them by uuid, flow by content) left out."""
    if isinstance(value, float) and value != value:
        # NaN is never equal to itself: compared as a name (or as null, to spot a flow that
        # wrote null where promptflow wrote NaN)
        return None if nan_as_null else "<NaN>"
    if isinstance(value, str):
        return re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", value)
    if isinstance(value, list):
        return [normalize(v, nan_as_null) for v in value]
    if isinstance(value, dict):
        if len(value) == 1:
            (key, v), = value.items()
            if key.startswith("data:image/") and key.endswith(";path"):
                mime = key[len("data:"):-len(";path")].replace("image/jpg", "image/jpeg")
                return {"image": mime}
        # message_format: openai-vision refers to a saved image as {"type": "image_file", ...}
        if len(value) == 2 and value.get("type") == "image_file" and isinstance(value.get("image_file"), dict):
            ext = str(value["image_file"].get("path", "")).rsplit(".", 1)[-1].lower()
            return {"image": "image/" + {"jpg": "jpeg"}.get(ext, ext)}
        # `pf flow test` reports `line_number` as an output of a flow that has none
        return {k: normalize(v, nan_as_null) for k, v in value.items() if k != "line_number"}
    return value


def last_line(text):
    """The error line of a failed run's output (the last line naming an error, else the last)."""
    lines = [l for l in (text or "").splitlines() if l.strip()]
    marked = [l for l in lines if "flow.test failed" in l or l.startswith("error:")]
    errors = [l for l in lines if "rror" in l and "WARNING" not in l]
    return (marked or errors or lines or [""])[-1][:400]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("promptflow_dir", type=Path)
    ap.add_argument("--flow-bin", default=str(Path(__file__).resolve().parent.parent / "target/debug/flow"))
    ap.add_argument("--pf", default=shutil.which("pf") or "pf")
    ap.add_argument("--only", default="")
    ap.add_argument("--out", type=Path, default=Path("pf-conformance.jsonl"))
    ap.add_argument("--jobs", type=int, default=4, help="flows measured at once")
    ap.add_argument(
        "--reuse-pf",
        type=Path,
        help="an earlier --out file: take promptflow's results from it and run only flow",
    )
    args = ap.parse_args()
    args.promptflow_dir = args.promptflow_dir.resolve()
    # flow keeps its runs and cache at the project root: make the checkout one
    (args.promptflow_dir / "flow.toml").write_text("# project root for bench/pf-conformance.py\n")

    port = start_mock()
    base = f"http://127.0.0.1:{port}"
    key = "sk-mock-0123456789abcdef"
    scratch = Path(tempfile.mkdtemp(prefix="pf-conformance-"))
    home = scratch / "home"
    home.mkdir()
    env = dict(os.environ)
    env.update(
        HOME=str(home),
        PF_DISABLE_TRACING="true",
        PROMPTFLOW_DISABLE_TELEMETRY="true",
        MOCK_LLM_KEY=key,
        **{f"MOCK_SECRET_{k.upper()}": v for secrets in CUSTOM.values() for k, v in secrets.items()},
        NO_PROXY="127.0.0.1,localhost",
    )
    # the vendors' standard variables, as a developer trying the examples sets them
    env.update(
        OPENAI_API_KEY=key,
        OPENAI_BASE_URL=f"{base}/v1",
        AZURE_OPENAI_API_KEY=key,
        AZURE_OPENAI_ENDPOINT=base,
        OPENAI_API_VERSION="2024-02-01",
    )
    # flow runs Python nodes in promptflow's own environment, so both see the same packages
    # (flow's shim still comes first on the import path)
    pf_python = Path(args.pf).resolve().parent / "python"
    if pf_python.exists():
        env.setdefault("FLOW_PYTHON", str(pf_python))
    pf_conns = scratch / "pf-connections"
    flow_conns = scratch / "flow-connections"
    connection_files(pf_conns, base, key)
    connection_files(flow_conns, base, "${env:MOCK_LLM_KEY}")
    subprocess.run([args.pf, "config", "set", "telemetry.enabled=false"], env=env, capture_output=True)
    for f in sorted(pf_conns.iterdir()):
        subprocess.run([args.pf, "connection", "create", "-f", str(f)], env=env, capture_output=True)

    flows = [f for f in find_flows(args.promptflow_dir) if args.only in str(f)]
    reuse = {}
    if args.reuse_pf:
        for line in args.reuse_pf.read_text().splitlines():
            row = json.loads(line)
            reuse[row["flow"]] = row
    lock = threading.Lock()
    results = []

    def measure(flow_path):
        rel = str(flow_path.relative_to(args.promptflow_dir))
        inputs = sample_inputs(flow_path)
        init = init_args(flow_path)
        work = Path(tempfile.mkdtemp(dir=scratch))
        (work / "pf").mkdir()
        (work / "flow").mkdir()
        earlier = reuse.get(rel)
        if earlier is not None and earlier["pf_exit"] == 0 and earlier["pf_outputs"] is None:
            earlier = None  # promptflow ran it but its outputs were not read: run it again
        if earlier is not None:
            pcode, pout, perr, psecs = earlier["pf_exit"], earlier["pf_outputs"], earlier["pf_error"], earlier["pf_secs"]
        else:
            pcode, pout, perr, psecs = pf_test(args.pf, flow_path, inputs, init, env, work)
        fcode, fout, ferr, fsecs = flow_run(args.flow_bin, flow_path, inputs, init, flow_conns, env, work)
        if pcode != 0:
            verdict = "not counted"
        elif fcode != 0 and rel.split("/")[-2] in RANDOM_FAILURE and "Random failure" in ferr:
            verdict = "not counted"
        elif fcode == 0 and normalize(fout) == normalize(pout):
            verdict = "pass"
        elif fcode == 0 and rel.split("/")[-2] in NONDETERMINISTIC:
            verdict = "pass"  # both ran; the outputs differ run to run under promptflow too
        elif fcode == 0 and normalize(fout) == normalize(pout, nan_as_null=True):
            verdict = "differs: NaN"
        elif fcode == 0:
            verdict = "differs"
        elif fcode != 0 and rel.split("/")[-2] in DELIBERATE:
            verdict = "deliberate"
        elif fcode == 2:
            verdict = "refused"
        else:
            verdict = "fail"
        row = {
            "flow": rel,
            "verdict": verdict,
            "pf_exit": pcode,
            "flow_exit": fcode,
            "pf_secs": round(psecs, 2),
            "flow_secs": round(fsecs, 2),
            "pf_error": (perr if earlier is not None else last_line(perr)) if pcode != 0 else "",
            "flow_error": last_line(ferr) if fcode != 0 else "",
            "pf_outputs": pout,
            "flow_outputs": fout if verdict == "differs" else None,
        }
        shutil.rmtree(work, ignore_errors=True)
        with lock:
            results.append(row)
            out.write(json.dumps(row) + "\n")
            out.flush()
            print(f"[{len(results)}/{len(flows)}] {verdict:12} {rel}", file=sys.stderr)

    with args.out.open("w") as out, ThreadPoolExecutor(max_workers=args.jobs) as pool:
        # flows sharing a folder (.prompty files) share its .promptflow: one at a time
        groups = {}
        for f in flows:
            groups.setdefault(f.parent, []).append(f)
        list(pool.map(lambda group: [measure(f) for f in group], groups.values()))

    counted = [r for r in results if r["verdict"] != "not counted"]
    passed = sum(r["verdict"] == "pass" for r in counted)
    print(f"\n{len(results)} flows; promptflow ran {len(counted)} here.")
    for v in ("pass", "deliberate", "differs: NaN", "differs", "refused", "fail"):
        n = sum(r["verdict"] == v for r in counted)
        print(f"  {v:12} {n:4}  ({100 * n / max(1, len(counted)):.1f}%)")
    print(f"flow passes {passed}/{len(counted)} = {100 * passed / max(1, len(counted)):.1f}%")
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
