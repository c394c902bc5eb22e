//! Typed flag values that clap parses itself, so a bad value is a usage error (exit 2) that
//! names the flag and says why: durations in seconds and positive counts.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Why a flag's value was refused (clap prints it after the flag and the value).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("not a number of seconds (e.g. 30 or 0.5)")]
    NotSeconds,
    #[error("must be a finite number of seconds (e.g. 30 or 0.5)")]
    NotFinite,
    #[error("must be more than 0 seconds")]
    NotPositive,
    #[error("must be 0 (off) or a positive number of seconds")]
    Negative,
    #[error("not a whole number (e.g. 1 or 8)")]
    NotCount,
    #[error("must be at least 1")]
    Zero,
    #[error("not a number (e.g. 0.02)")]
    NotNumber,
    #[error("must be a finite number of at least 0 (e.g. 0.02)")]
    NotNonNegative,
    /// An age `flow::cache::parse_age` refused, with its reason.
    #[error("{0}")]
    Age(String),
}

/// A finite, non-negative number of seconds as written (`0` allowed; the callers decide).
fn seconds(text: &str) -> Result<f64, ValueError> {
    let s: f64 = text.trim().parse().map_err(|_| ValueError::NotSeconds)?;
    if !s.is_finite() {
        return Err(ValueError::NotFinite);
    }
    Ok(s)
}

/// A positive, finite number of seconds (`30`, `0.5`): timeouts and waits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Seconds(Duration);

impl Seconds {
    /// `secs` seconds; `None` unless positive and finite.
    pub fn new(secs: f64) -> Option<Self> {
        (secs > 0.0 && secs.is_finite()).then(|| Seconds(Duration::from_secs_f64(secs)))
    }

    /// The duration.
    pub fn duration(self) -> Duration {
        self.0
    }

    /// The number of seconds, as recorded in a run's `meta.json`.
    pub fn as_secs_f64(self) -> f64 {
        self.0.as_secs_f64()
    }
}

impl FromStr for Seconds {
    type Err = ValueError;

    fn from_str(text: &str) -> Result<Self, ValueError> {
        let s = seconds(text)?;
        Seconds::new(s).ok_or(ValueError::NotPositive)
    }
}

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.as_secs_f64())
    }
}

/// A number of seconds where `0` means "off" (`--upload-every 0`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SecondsOrOff(Option<Seconds>);

impl SecondsOrOff {
    /// The period, or `None` for `0`.
    pub fn duration(self) -> Option<Duration> {
        self.0.map(Seconds::duration)
    }
}

impl FromStr for SecondsOrOff {
    type Err = ValueError;

    fn from_str(text: &str) -> Result<Self, ValueError> {
        match seconds(text)? {
            0.0 => Ok(SecondsOrOff(None)),
            s => Seconds::new(s)
                .map(Some)
                .map(SecondsOrOff)
                .ok_or(ValueError::Negative),
        }
    }
}

impl fmt::Display for SecondsOrOff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(s) => s.fmt(f),
            None => f.write_str("0"),
        }
    }
}

/// A whole number of at least 1 (`--concurrency`, `--replicas`, `--shards`, `--repeat`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Count<T = usize>(T);

/// The integer types a [`Count`] holds.
pub trait CountInt: Copy + FromStr + PartialOrd + Default + fmt::Display {}
impl CountInt for usize {}
impl CountInt for u32 {}

impl<T: CountInt> Count<T> {
    /// `n`, if it is at least 1.
    pub fn new(n: T) -> Option<Self> {
        (n > T::default()).then_some(Count(n))
    }

    /// The number.
    pub fn get(self) -> T {
        self.0
    }
}

impl Count<usize> {
    /// `n`, or 1 when `n` is 0: for constants such as a default.
    pub const fn at_least_one(n: usize) -> Self {
        Count(if n == 0 { 1 } else { n })
    }
}

impl<T: CountInt> FromStr for Count<T> {
    type Err = ValueError;

    fn from_str(text: &str) -> Result<Self, ValueError> {
        let n: T = text.trim().parse().map_err(|_| ValueError::NotCount)?;
        Count::new(n).ok_or(ValueError::Zero)
    }
}

impl<T: fmt::Display> fmt::Display for Count<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A finite number of at least 0 (`--tolerance`).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct NonNegative(f64);

impl NonNegative {
    /// The number.
    pub fn get(self) -> f64 {
        self.0
    }
}

impl FromStr for NonNegative {
    type Err = ValueError;

    fn from_str(text: &str) -> Result<Self, ValueError> {
        let x: f64 = text.trim().parse().map_err(|_| ValueError::NotNumber)?;
        if x >= 0.0 && x.is_finite() {
            Ok(NonNegative(x))
        } else {
            Err(ValueError::NotNonNegative)
        }
    }
}

impl fmt::Display for NonNegative {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An age like `7d`, `12h`, `30m`, `45s` or `2w` (`flow cache clear --older-than`): as written,
/// for messages, and as a duration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Age {
    text: String,
    duration: Duration,
}

impl Age {
    /// The age as a duration.
    pub fn duration(&self) -> Duration {
        self.duration
    }
}

impl FromStr for Age {
    type Err = ValueError;

    fn from_str(text: &str) -> Result<Self, ValueError> {
        let duration = flow::cache::parse_age(text).map_err(ValueError::Age)?;
        Ok(Age {
            text: text.trim().to_string(),
            duration,
        })
    }
}

impl fmt::Display for Age {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_are_positive_and_finite() {
        assert_eq!(
            "0.5".parse::<Seconds>().map(Seconds::duration),
            Ok(Duration::from_millis(500))
        );
        assert_eq!(
            "120".parse::<Seconds>().map(Seconds::duration),
            Ok(Duration::from_secs(120))
        );
        for (bad, why) in [
            ("0", ValueError::NotPositive),
            ("-1", ValueError::NotPositive),
            ("nan", ValueError::NotFinite),
            ("inf", ValueError::NotFinite),
            ("abc", ValueError::NotSeconds),
            ("", ValueError::NotSeconds),
        ] {
            assert_eq!(bad.parse::<Seconds>(), Err(why), "{bad}");
        }
    }

    #[test]
    fn zero_seconds_can_mean_off() {
        assert_eq!(
            "0".parse::<SecondsOrOff>().map(SecondsOrOff::duration),
            Ok(None)
        );
        assert_eq!(
            "60".parse::<SecondsOrOff>().map(SecondsOrOff::duration),
            Ok(Some(Duration::from_secs(60)))
        );
        assert_eq!("-5".parse::<SecondsOrOff>(), Err(ValueError::Negative));
        assert_eq!("inf".parse::<SecondsOrOff>(), Err(ValueError::NotFinite));
        assert_eq!(SecondsOrOff(None).to_string(), "0");
    }

    #[test]
    fn counts_are_at_least_one() {
        assert_eq!("8".parse::<Count>().map(Count::get), Ok(8));
        assert_eq!("1".parse::<Count<u32>>().map(Count::get), Ok(1));
        assert_eq!("0".parse::<Count>(), Err(ValueError::Zero));
        assert_eq!("-1".parse::<Count>(), Err(ValueError::NotCount));
        assert_eq!("2.5".parse::<Count<u32>>(), Err(ValueError::NotCount));
        assert_eq!(
            "99999999999".parse::<Count<u32>>(),
            Err(ValueError::NotCount)
        );
    }

    #[test]
    fn tolerances_are_finite_and_not_negative() {
        assert_eq!("0".parse::<NonNegative>().map(NonNegative::get), Ok(0.0));
        assert_eq!(
            "0.02".parse::<NonNegative>().map(NonNegative::get),
            Ok(0.02)
        );
        assert_eq!(
            "-0.1".parse::<NonNegative>(),
            Err(ValueError::NotNonNegative)
        );
        assert_eq!(
            "nan".parse::<NonNegative>(),
            Err(ValueError::NotNonNegative)
        );
        assert_eq!("x".parse::<NonNegative>(), Err(ValueError::NotNumber));
    }

    #[test]
    fn ages_keep_their_spelling() {
        let week = "7d".parse::<Age>();
        assert_eq!(
            week.as_ref().map(Age::duration),
            Ok(Duration::from_secs(7 * 86_400))
        );
        assert_eq!(week.map(|a| a.to_string()), Ok("7d".to_string()));
        assert!(
            matches!("7y".parse::<Age>(), Err(ValueError::Age(m)) if m.contains("unknown unit"))
        );
    }

    #[test]
    fn defaults_print_as_written() {
        assert_eq!(
            "120".parse::<Seconds>().map(|s| s.to_string()),
            Ok("120".into())
        );
        assert_eq!(
            "0.5".parse::<Seconds>().map(|s| s.to_string()),
            Ok("0.5".into())
        );
    }
}
