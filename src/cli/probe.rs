//! `flow probe URL`: GET a URL, exit 0 on a 2xx answer — the image's HEALTHCHECK (distroless
//! images have no curl).

use clap::Args;

use super::output::Failure;
use super::runtime;
use super::settings::Seconds;

#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// The URL to GET.
    #[arg(default_value = "http://127.0.0.1:8080/health")]
    pub url: String,
    /// Seconds to wait for the answer.
    #[arg(long, value_name = "SECONDS", default_value = "3")]
    pub timeout: Seconds,
}

pub fn run(args: ProbeArgs) -> Result<(), Failure> {
    let rt = runtime()?;
    rt.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(args.timeout.duration())
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
