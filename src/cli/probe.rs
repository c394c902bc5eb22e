//! `flow probe URL`: GET a URL, exit 0 on a 2xx answer — the image's HEALTHCHECK (distroless
//! images have no curl).

use std::time::Duration;

use clap::Args;

use super::output::Failure;
use super::runtime;

#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// The URL to GET.
    #[arg(default_value = "http://127.0.0.1:8080/health")]
    pub url: String,
    /// Seconds to wait for the answer.
    #[arg(long, value_name = "SECONDS", default_value_t = 3.0)]
    pub timeout: f64,
}

pub fn run(args: ProbeArgs) -> Result<(), Failure> {
    if !(args.timeout > 0.0 && args.timeout.is_finite()) {
        return Err(Failure::usage(
            "error: --timeout must be a positive number of seconds",
        ));
    }
    let rt = runtime()?;
    rt.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs_f64(args.timeout))
            .build()
            .map_err(|e| Failure::usage(format!("error: {e}")))?;
        match client.get(&args.url).send().await {
            Ok(r) if r.status().is_success() => {
                outln!("{} {}", r.status().as_u16(), args.url);
                Ok(())
            }
            Ok(r) => Err(Failure::quality(format!(
                "{} answered {}",
                args.url,
                r.status()
            ))),
            Err(e) => Err(Failure::endpoint(format!("{}: {e}", args.url))),
        }
    })
}
