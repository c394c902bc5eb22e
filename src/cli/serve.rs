//! `flow serve FLOW`: the flow behind an HTTP API until SIGTERM or Ctrl-C (see `flow::serve`).

use std::path::PathBuf;

use clap::Args;

use super::common::{executor_options, load_flow, parse_variants, prepare};
use super::output::Failure;
use super::runtime;
use super::settings::{Count, ModelArgs, Seconds};
use flow::connection::Secret;
use flow::serve::{ServeConfig, ServeState};

/// The environment variable holding the bearer token the server requires.
pub const TOKEN_ENV: &str = "FLOW_SERVE_TOKEN";
/// The environment variable giving the port when `--port` is not (set in images by `flow build`).
pub const PORT_ENV: &str = "FLOW_SERVE_PORT";

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The flow: a directory holding flow.dag.yaml, the YAML file, or a .prompty file.
    pub flow: PathBuf,
    /// Address to listen on (0.0.0.0 for every interface, as in a container).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0: any free port; the address is printed).
    #[arg(long, env = "FLOW_SERVE_PORT", default_value_t = 8080)]
    pub port: u16,
    /// Use a variant: '${node.variant_id}' (repeatable, one per node).
    #[arg(long, value_name = "${NODE.VARIANT}")]
    pub variant: Vec<String>,
    /// Seconds one POST /score may take before it is answered with 504.
    #[arg(long, value_name = "SECONDS", default_value = "300")]
    pub timeout: Seconds,
    /// Largest request body accepted, in bytes (413 beyond).
    #[arg(long, value_name = "BYTES", default_value = "4194304")]
    pub max_body_bytes: Count,
    /// Most model requests in flight per endpoint (more requests wait their turn).
    #[arg(long, value_name = "N", default_value = "256")]
    pub concurrency: Count,
    /// Request log on stderr: one JSON line per request (json) or none (off).
    #[arg(long, value_enum, default_value_t = RequestLog::Json)]
    pub log: RequestLog,
    /// A flex flow's class entry `__init__` arguments: NAME=VALUE (repeatable) or a JSON file
    /// holding an object; the class is made once per Python worker with them.
    #[arg(long, value_name = "NAME=VALUE|FILE.json", num_args = 1..)]
    pub init: Vec<String>,
    #[command(flatten)]
    pub model: ModelArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RequestLog {
    /// One JSON object per request and per failed line.
    Json,
    /// No request log (startup and shutdown messages only).
    Off,
}

pub fn run(args: ServeArgs) -> Result<(), Failure> {
    let selections = parse_variants(&args.variant)?;
    let mut flow = load_flow(&args.flow, &selections)?;
    super::common::apply_init(&mut flow, &args.init)?;
    let mut options = executor_options(&args.model, &flow)?;
    // A server answers every request anew unless the response cache is asked for by name.
    if args.model.cache.cache.is_none() {
        options.cache = None;
    }
    options.max_in_flight = args.concurrency.get();
    let token = std::env::var(TOKEN_ENV)
        .ok()
        .filter(|t| !t.trim().is_empty())
        .map(|t| Secret::new(t.trim()));
    let stream = flow::executor::stream_output(&flow);
    let openapi = flow::serve::openapi::document(&flow, token.is_some(), stream.as_ref());
    let name = flow.name();
    let otlp = flow::telemetry::OtlpConfig::from_env();
    let offline = options.offline;
    let rt = runtime()?;
    rt.block_on(async move {
        let tracer = otlp.map(|c| {
            eprintln!("tracing: OTLP/HTTP to {}", c.traces_url);
            flow::telemetry::Tracer::start(c, &name)
        });
        let config = ServeConfig {
            request_timeout: args.timeout.duration(),
            max_body_bytes: args.max_body_bytes.get(),
            token,
            request_log: args.log == RequestLog::Json,
            tracer,
        };
        let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
            .await
            .map_err(|e| {
                Failure::usage(format!(
                    "error: cannot listen on {}:{}: {e}",
                    args.host, args.port
                ))
            })?;
        let addr = listener
            .local_addr()
            .map_err(|e| Failure::usage(format!("error: cannot listen: {e}")))?;
        let state = ServeState::new(config, openapi, stream);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let shutdown = {
            let state = state.clone();
            async move {
                let signal = tokio::select! {
                    s = flow::serve::shutdown_signal() => Some(s),
                    _ = stop_rx => None,
                };
                state.begin_shutdown();
                if let Some(signal) = signal {
                    eprintln!(
                        "{signal}: finishing {} request(s) in flight, then stopping",
                        state.metrics().in_flight()
                    );
                }
            }
        };
        let server = tokio::spawn(flow::serve::serve(listener, state.clone(), shutdown));
        eprintln!("flow serve: {name} on http://{addr} (preparing the flow)");
        match prepare(flow, &options).await {
            Ok(executor) => {
                state.set_ready(executor);
                eprintln!(
                    "ready: POST http://{addr}/score{}",
                    if offline {
                        " (offline: answers come from the echo provider, not a model)"
                    } else {
                        ""
                    }
                );
            }
            Err(failure) => {
                let _ = stop_tx.send(());
                let _ = server.await;
                return Err(failure);
            }
        }
        let result = server.await;
        state.shutdown_executor().await;
        drop(stop_tx);
        match result {
            Ok(Ok(())) => {
                eprintln!("stopped");
                Ok(())
            }
            Ok(Err(e)) => Err(Failure::usage(format!("error: the server stopped: {e}"))),
            Err(e) => Err(Failure::usage(format!("error: the server stopped: {e}"))),
        }
    })
}
