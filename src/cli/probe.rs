//! `flow probe URL`: GET a URL, exit 0 on a 2xx answer — the image's HEALTHCHECK (the
//! images have no curl).

use clap::Args;

use super::output::Failure;
use super::runtime;
use super::settings::Seconds;

#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// The URL to GET [default: http://127.0.0.1:$FLOW_SERVE_PORT/health, port 8080 when
    /// unset: the image's health check].
    pub url: Option<String>,
    /// Seconds to wait for the answer.
    #[arg(long, value_name = "SECONDS", default_value = "3")]
    pub timeout: Seconds,
}

pub fn run(args: ProbeArgs) -> Result<(), Failure> {
    let url = match args.url {
        Some(url) => url,
        None => {
            let port = match std::env::var(super::serve::PORT_ENV) {
                Ok(p) => p.trim().parse::<u16>().map_err(|_| {
                    Failure::usage(format!(
                        "error: {}={p:?} is not a port number",
                        super::serve::PORT_ENV
                    ))
                })?,
                Err(_) => 8080,
            };
            format!("http://127.0.0.1:{port}/health")
        }
    };
    let rt = runtime()?;
    rt.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(args.timeout.duration())
            .build()
            .map_err(|e| Failure::usage(format!("error: {e}")))?;
        match client.get(&url).send().await {
            Ok(r) if r.status().is_success() => {
                outln!("{} {}", r.status().as_u16(), url);
                Ok(())
            }
            Ok(r) => Err(Failure::quality(format!("{} answered {}", url, r.status()))),
            Err(e) => Err(Failure::endpoint(format!("{url}: {e}"))),
        }
    })
}
