//! An S3-compatible server on loopback for tests: `moto` in server mode (PyPI `moto[server]`,
//! installed by `.ci/run`). Stops on drop.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running moto server with one empty bucket.
pub struct S3Server {
    child: Child,
    pub port: u16,
    pub bucket: String,
}

impl S3Server {
    /// Starts moto on a free port and creates `bucket`. Panics with the fix when moto is missing.
    pub fn start(bucket: &str) -> S3Server {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
            l.local_addr().expect("addr").port()
        };
        let child = Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 -m moto.server (pip install 'moto[server]')");
        let server = S3Server {
            child,
            port,
            bucket: bucket.to_string(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "moto did not start on port {port}: is it installed? pip install 'moto[server]'"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        // Anonymous requests are accepted by moto: create the bucket with a plain PUT.
        let status = std::process::Command::new("python3")
            .args([
                "-c",
                &format!(
                    "import urllib.request as u; r = u.urlopen(u.Request('http://127.0.0.1:{port}/{bucket}', method='PUT')); print(r.status)"
                ),
            ])
            .output()
            .expect("create bucket");
        assert!(
            status.status.success(),
            "cannot create bucket: {}",
            String::from_utf8_lossy(&status.stderr)
        );
        server
    }

    /// The variables `flow` needs to reach this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "AWS_ENDPOINT_URL",
                format!("http://127.0.0.1:{}", self.port),
            ),
            ("AWS_ALLOW_HTTP", "true".to_string()),
            ("AWS_ACCESS_KEY_ID", "testing".to_string()),
            ("AWS_SECRET_ACCESS_KEY", "testing".to_string()),
            ("AWS_REGION", "us-east-1".to_string()),
        ]
    }

    /// `s3://bucket/prefix`.
    pub fn url(&self, prefix: &str) -> String {
        format!("s3://{}/{prefix}", self.bucket)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
