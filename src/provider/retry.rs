//! Retry policy: how many times and how long to wait before retrying a failed LLM call.

use std::time::{Duration, SystemTime};

/// Exponential backoff with full jitter, honouring a server's `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (0 disables retrying).
    pub max_retries: u32,
    /// Backoff base: the n-th retry waits a random time in `[0, min(cap, base * 2^n)]`.
    pub base: Duration,
    /// Longest wait between attempts, also the ceiling for a server's `Retry-After`.
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 5,
            base: Duration::from_millis(500),
            cap: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// How long to wait before retry number `retry` (0-based). A server-given `retry_after`
    /// wins over the computed backoff (capped at `cap`).
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(ra) = retry_after {
            return ra.min(self.cap);
        }
        let exp = self
            .base
            .saturating_mul(2u32.saturating_pow(retry.min(20)))
            .min(self.cap);
        let nanos = u64::try_from(exp.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(fastrand::u64(0..=nanos))
    }
}

/// Parses `retry-after-ms` (milliseconds) or `Retry-After` (seconds or an HTTP date).
pub fn parse_retry_after(
    retry_after_ms: Option<&str>,
    retry_after: Option<&str>,
) -> Option<Duration> {
    if let Some(ms) = retry_after_ms.and_then(|v| v.trim().parse::<f64>().ok()) {
        if ms.is_finite() && ms >= 0.0 {
            return Some(Duration::from_secs_f64(ms / 1000.0));
        }
    }
    let v = retry_after?.trim();
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let at = parse_http_date(v)?;
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .ok()?
        .as_secs();
    Some(Duration::from_secs(at.saturating_sub(now)))
}

/// Parses an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) to seconds since the Unix epoch.
pub fn parse_http_date(s: &str) -> Option<u64> {
    let rest = s.split_once(',').map_or(s, |(_, r)| r).trim();
    let mut parts = rest.split_whitespace();
    let day: u64 = parts.next()?.parse().ok()?;
    let month = match parts.next()?.to_ascii_lowercase().as_str() {
        "jan" => 1,
        "feb" => 2,
        "mar" => 3,
        "apr" => 4,
        "may" => 5,
        "jun" => 6,
        "jul" => 7,
        "aug" => 8,
        "sep" => 9,
        "oct" => 10,
        "nov" => 11,
        "dec" => 12,
        _ => return None,
    };
    let year: i64 = parts.next()?.parse().ok()?;
    let mut hms = parts.next()?.split(':').map(|p| p.parse::<u64>().ok());
    let (h, m, sec) = (hms.next()??, hms.next()??, hms.next()??);
    if !(1..=31).contains(&day) || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::try_from(day).ok()? - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + i64::try_from(h * 3600 + m * 60 + sec).ok()?;
    u64::try_from(secs).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_date_parses() {
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(parse_http_date("garbage"), None);
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(
            parse_retry_after(None, Some("3")),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            parse_retry_after(Some("250"), Some("3")),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            parse_retry_after(None, Some("Thu, 01 Jan 1970 00:00:00 GMT")),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after(None, None), None);
    }

    #[test]
    fn backoff_is_bounded() {
        let p = RetryPolicy {
            max_retries: 3,
            base: Duration::from_millis(10),
            cap: Duration::from_millis(50),
        };
        for n in 0..10 {
            let d = p.delay(n, None);
            assert!(
                d <= Duration::from_millis(50).min(Duration::from_millis(10) * 2u32.pow(n.min(10)))
            );
        }
        assert_eq!(
            p.delay(0, Some(Duration::from_secs(9))),
            Duration::from_millis(50)
        );
        assert_eq!(
            p.delay(0, Some(Duration::from_millis(7))),
            Duration::from_millis(7)
        );
    }
}
