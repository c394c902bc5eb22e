//! Adaptive per-endpoint rate limiter, shared by every line of a run through the [`LlmClient`].
//!
//! One limiter per endpoint target: connection name + base URL + model (or Azure deployment).
//! Two connections pointing at the same server are limited separately (they may use different
//! keys, hence different quotas); two models of one connection too (quotas are per model).
//!
//! What a request goes through before it is sent ([`Endpoint::acquire`]):
//! 1. an in-flight slot: a FIFO [`Semaphore`] whose capacity is the current limit. The limit
//!    starts at `ClientConfig::max_in_flight` and adapts (AIMD): +1 after a window of `limit`
//!    successes, halved on a 429 (×¾ on a 503), at most once per round of requests, never below 1;
//! 2. the endpoint's gates: a pause after a 429 (its `Retry-After` / `retry-after-ms`, else an
//!    exponential backoff with jitter), the quota from `x-ratelimit-remaining-requests` /
//!    `x-ratelimit-reset-requests` (when it runs out, the next request waits until one is back:
//!    at the refill rate `(limit - remaining) / reset`, taken as the best lower bound the
//!    replies' rounded headers allow, when `x-ratelimit-limit-requests` is sent; else until the
//!    reset, when the whole quota is back), a zero
//!    `x-ratelimit-remaining-tokens` (wait for `x-ratelimit-reset-tokens`), and, after a 429,
//!    a single probe request until the endpoint answers again (so a pause does not end in a
//!    thundering herd), and a learned request rate ([`Pacer`]) for endpoints that answer 429
//!    without quota headers: set just under the observed success rate at the first 429, ×0.8
//!    at each later round with 429s, +5 %/s while requests succeed, dropped after 30 s without
//!    a 429. While pacing, a 429 does not cut the in-flight limit below what the paced rate
//!    needs at the observed latency (Little's law, ×2), so slow models keep their throughput.
//!
//! Locks are short `std` mutexes never held across an await.
//!
//! [`LlmClient`]: super::LlmClient

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use reqwest::header::HeaderMap;
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;

use super::RetryPolicy;
use crate::connection::Connection;

/// A snapshot of one endpoint's limiter, for progress bars and run summaries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimiterStats {
    /// Connection name.
    pub connection: String,
    /// The connection's base URL.
    pub endpoint: String,
    /// Model or deployment (`None` when the connection names none).
    pub model: Option<String>,
    /// Current in-flight limit.
    pub limit: usize,
    /// The configured maximum in-flight limit.
    pub max_in_flight: usize,
    /// Requests on the wire right now.
    pub in_flight: usize,
    /// Requests sent (attempts, including retries).
    pub requests: u64,
    /// 429 replies received.
    pub rate_limited: u64,
    /// Retries made (after 429s, 5xx, timeouts and connection errors).
    pub retries: u64,
    /// How much longer the endpoint is paused, if it is.
    pub paused_for: Option<Duration>,
}

/// Rate-limit information from a reply's headers (OpenAI / Azure `x-ratelimit-*`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct RateInfo {
    /// `x-ratelimit-limit-requests`: the request quota when full.
    pub limit_requests: Option<u64>,
    /// `x-ratelimit-remaining-requests`.
    pub remaining_requests: Option<u64>,
    /// `x-ratelimit-reset-requests`: time until the request quota is full again.
    pub reset_requests: Option<Duration>,
    /// `x-ratelimit-remaining-tokens`.
    pub remaining_tokens: Option<u64>,
    /// `x-ratelimit-reset-tokens`.
    pub reset_tokens: Option<Duration>,
}

impl RateInfo {
    /// Reads the `x-ratelimit-*` headers (absent or unparsable ones are `None`).
    pub fn from_headers(h: &HeaderMap) -> Self {
        let get = |name: &str| h.get(name).and_then(|v| v.to_str().ok());
        let count = |name: &str| get(name).and_then(parse_count);
        let reset = |name: &str| get(name).and_then(parse_reset);
        RateInfo {
            limit_requests: count("x-ratelimit-limit-requests"),
            remaining_requests: count("x-ratelimit-remaining-requests"),
            reset_requests: reset("x-ratelimit-reset-requests"),
            remaining_tokens: count("x-ratelimit-remaining-tokens"),
            reset_tokens: reset("x-ratelimit-reset-tokens"),
        }
    }
}

fn parse_count(s: &str) -> Option<u64> {
    let s = s.trim();
    s.parse::<u64>().ok().or_else(|| {
        let f = s.parse::<f64>().ok()?;
        // Truncation intended: a fractional remainder is not a whole request.
        (f.is_finite() && f >= 0.0).then_some(f as u64)
    })
}

/// Parses an OpenAI reset duration: `1s`, `6m0s`, `20ms`, `1m30.5s`, `2h`, or bare seconds.
pub(crate) fn parse_reset(s: &str) -> Option<Duration> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let value: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += value * scale;
    }
    (total.is_finite() && !s.is_empty()).then(|| Duration::from_secs_f64(total))
}

/// The limiters of one client, created lazily per endpoint.
#[derive(Debug)]
pub(crate) struct Limiters {
    max_in_flight: usize,
    map: RwLock<HashMap<String, Arc<Endpoint>>>,
}

impl Limiters {
    /// Limiters whose in-flight limit starts at (and never exceeds) `max_in_flight` (min 1).
    pub fn new(max_in_flight: usize) -> Self {
        Limiters {
            max_in_flight: max_in_flight.max(1),
            map: RwLock::new(HashMap::new()),
        }
    }

    /// The limiter of `conn` for `model`, created on first use.
    pub fn get(&self, conn: &Connection, model: Option<&str>) -> Arc<Endpoint> {
        let base = conn.api_base.as_deref().unwrap_or("");
        let model_s = model.unwrap_or("");
        let mut key = String::with_capacity(conn.name.len() + base.len() + model_s.len() + 2);
        for (i, part) in [conn.name.as_str(), base, model_s].into_iter().enumerate() {
            if i > 0 {
                key.push('\n');
            }
            key.push_str(part);
        }
        if let Some(ep) = self
            .map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            return ep.clone();
        }
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        map.entry(key)
            .or_insert_with(|| {
                Arc::new(Endpoint::new(
                    conn.name.clone(),
                    base.to_string(),
                    model.map(str::to_string),
                    self.max_in_flight,
                ))
            })
            .clone()
    }

    /// Stats of every endpoint used so far, sorted by connection, endpoint and model.
    pub fn stats(&self) -> Vec<LimiterStats> {
        let mut out: Vec<LimiterStats> = self
            .map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .map(|e| e.stats())
            .collect();
        out.sort_by(|a, b| {
            (&a.connection, &a.endpoint, &a.model).cmp(&(&b.connection, &b.endpoint, &b.model))
        });
        out
    }
}

/// The limiter of one endpoint.
#[derive(Debug)]
pub(crate) struct Endpoint {
    connection: String,
    endpoint: String,
    model: Option<String>,
    max: usize,
    slots: Semaphore,
    state: Mutex<State>,
    wake: Notify,
    retries: AtomicU64,
    /// Requests waiting in [`Endpoint::acquire`] (for a slot or a gate).
    waiting: AtomicUsize,
}

/// How busy an endpoint is, for choosing among the members of a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Load {
    /// Requests in flight plus requests waiting for this endpoint.
    pub busy: usize,
    /// The current in-flight limit.
    pub limit: usize,
    /// The endpoint is paused (429, spent quota) until then.
    pub blocked_until: Option<Instant>,
}

impl Load {
    /// Free in-flight slots (negative when requests queue).
    pub fn free(&self) -> i64 {
        i64::try_from(self.limit).unwrap_or(i64::MAX) - i64::try_from(self.busy).unwrap_or(i64::MAX)
    }
}

#[derive(Debug)]
struct State {
    /// Current in-flight limit.
    limit: usize,
    /// Slots to withhold when released (the limit was cut while they were taken).
    debt: usize,
    in_flight: usize,
    /// Successes since the limit last changed.
    successes: usize,
    /// Bumped at each decrease; a 429 of a request sent before it does not decrease again.
    epoch: u64,
    paused_until: Option<Instant>,
    window: Option<Window>,
    /// After a 429: let one request through until the endpoint answers again.
    probing: bool,
    probe_out: bool,
    consecutive_429: u32,
    requests: u64,
    rate_limited: u64,
    pacer: Pacer,
}

/// Spaces dispatches when the endpoint's request rate had to be learned from 429s.
#[derive(Debug)]
struct Pacer {
    /// Allowed requests per second; `None`: no pacing.
    rate: Option<f64>,
    /// Earliest next dispatch.
    next_at: Option<Instant>,
    last_429: Option<Instant>,
    /// Moving average of successful attempts' duration, in seconds.
    latency: f64,
    /// Successes counted since `window_start`, and the rate of the last complete window.
    window_start: Option<Instant>,
    window_ok: u32,
    prev_rate: f64,
    /// The endpoint sends quota headers: the quota window paces it, not this.
    off: bool,
}

/// Lowest learned rate, requests per second.
const MIN_RATE: f64 = 0.5;
/// Pacing stops after this long without a 429.
const PACE_FOR: Duration = Duration::from_secs(30);

impl Pacer {
    fn new() -> Self {
        Pacer {
            rate: None,
            next_at: None,
            last_429: None,
            latency: 0.0,
            window_start: None,
            window_ok: 0,
            prev_rate: 0.0,
            off: false,
        }
    }

    /// Successes per second recently.
    fn success_rate(&self, now: Instant) -> f64 {
        let Some(start) = self.window_start else {
            return 0.0;
        };
        let elapsed = now.saturating_duration_since(start).as_secs_f64();
        if elapsed >= 0.25 || self.prev_rate == 0.0 {
            f64::from(self.window_ok) / elapsed.max(0.05)
        } else {
            self.prev_rate
        }
    }

    fn on_success(&mut self, now: Instant, took: Duration) {
        let d = took.as_secs_f64();
        self.latency = if self.latency == 0.0 {
            d
        } else {
            0.9 * self.latency + 0.1 * d
        };
        let start = *self.window_start.get_or_insert(now);
        let elapsed = now.saturating_duration_since(start).as_secs_f64();
        self.window_ok += 1;
        if elapsed >= 1.0 {
            self.prev_rate = f64::from(self.window_ok) / elapsed;
            self.window_start = Some(now);
            self.window_ok = 0;
        }
        if let Some(r) = self.rate {
            if self
                .last_429
                .is_some_and(|t| now.saturating_duration_since(t) > PACE_FOR)
            {
                self.rate = None;
                self.next_at = None;
            } else {
                self.rate = Some(r + 0.05);
            }
        }
    }

    /// A round of requests met 429s: slow down. Returns the in-flight count the new rate needs.
    fn on_429(&mut self, now: Instant) -> usize {
        self.last_429 = Some(now);
        let rate = match self.rate {
            Some(r) => r * 0.8,
            // Quota headers do better; and with no success yet there is nothing to learn from
            // (the pause and probe do the work).
            _ if self.off => return 1,
            None if self.window_start.is_none() => return 1,
            None => self.success_rate(now) * 0.9,
        }
        .max(MIN_RATE);
        self.rate = Some(rate);
        // Saturating float-to-int conversion is intended.
        (rate * self.latency * 2.0).ceil() as usize
    }

    /// When the next request may go, if not now.
    fn wait_until(&self, now: Instant) -> Option<Instant> {
        self.next_at.filter(|t| *t > now && self.rate.is_some())
    }

    fn dispatched(&mut self, now: Instant) {
        if let Some(r) = self.rate {
            let from = self.next_at.filter(|t| *t > now).unwrap_or(now);
            self.next_at = Some(from + Duration::from_secs_f64(1.0 / r));
        }
    }
}

/// The request quota the server announced, minus what was sent since, plus what it has
/// refilled since when the refill rate is known.
#[derive(Debug, Clone, Copy)]
struct Window {
    /// Requests allowed as of `as_of` (negative: more are on the wire than the quota had).
    remaining: f64,
    as_of: Instant,
    /// Requests per second the quota refills by (a lower bound: [`refill_bound`]), when the
    /// server sends its limit. Without it the whole quota comes back at `reset_at`, not before.
    refill: Option<f64>,
    /// The quota when full (`x-ratelimit-limit-requests`): refilling stops there.
    cap: f64,
    /// When the quota is full again.
    reset_at: Instant,
}

impl Window {
    /// Requests allowed now.
    fn available(&self, now: Instant) -> f64 {
        let refilled = self.refill.map_or(0.0, |r| {
            r * now.saturating_duration_since(self.as_of).as_secs_f64()
        });
        (self.remaining + refilled).min(self.cap.max(self.remaining))
    }

    /// When the next request may go, if not now.
    fn wait(&self, now: Instant) -> Option<Instant> {
        let available = self.available(now);
        if available >= 1.0 {
            return None;
        }
        Some(match self.refill {
            Some(r) => now + Duration::from_secs_f64((1.0 - available) / r),
            None => self.reset_at,
        })
    }

    /// Whether the window says nothing any more: past its reset, when the quota is back in
    /// full. A window that knows its refill rate never expires: it refills up to its limit.
    fn expired(&self, now: Instant) -> bool {
        self.refill.is_none() && self.reset_at <= now
    }

    /// Count one request sent now.
    fn take(&mut self, now: Instant) {
        self.remaining = self.available(now) - 1.0;
        self.as_of = now;
    }
}

enum Gate {
    Go,
    Until(Instant),
    WaitProbe,
}

/// A lower bound of the rate a quota refills at, from one reply: `(limit - remaining) / reset`
/// with the headers' rounding against it (the count is whole requests, the reset is whole
/// milliseconds, or whole seconds past a minute), so it never overstates the rate.
fn refill_bound(limit: u64, remaining: u64, reset: Duration) -> Option<f64> {
    let grain = if reset < Duration::from_secs(60) {
        Duration::from_millis(1)
    } else {
        Duration::from_secs(1)
    };
    let missing = limit.checked_sub(remaining)?.checked_sub(1)?;
    (missing > 0).then(|| missing as f64 / (reset + grain).as_secs_f64())
}

/// The quota window a reply's headers announce. The server counted `remaining` when this
/// request reached it: requests sent after it (`sent_after`) are not counted there yet, and
/// when the refill rate is known (`x-ratelimit-limit-requests`), the quota has refilled since
/// it was sent. The rate is the best lower bound seen (`known_refill`, from earlier replies,
/// and this one's). Without the limit, every request still on the wire (`others`) is taken off
/// and the quota only comes back at the reset.
#[allow(clippy::too_many_arguments)]
fn quota_window(
    info: &RateInfo,
    remaining: u64,
    reset: Duration,
    now: Instant,
    sent_at: Instant,
    sent_after: u64,
    others: usize,
    known_refill: Option<f64>,
) -> Window {
    let refill = match (
        info.limit_requests
            .and_then(|limit| refill_bound(limit, remaining, reset)),
        known_refill,
    ) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b).filter(|_| info.limit_requests.is_some()),
    };
    let cap = info.limit_requests.map_or(f64::MAX, |l| l as f64);
    let remaining = match refill {
        Some(r) => {
            let since_sent = now.saturating_duration_since(sent_at).as_secs_f64();
            (remaining as f64 + r * since_sent).min(cap) - sent_after as f64
        }
        None => remaining.saturating_sub(others as u64) as f64,
    };
    Window {
        remaining,
        as_of: now,
        refill,
        cap,
        reset_at: now + reset,
    }
}

impl State {
    fn gate(&mut self, now: Instant) -> Gate {
        if let Some(t) = self.paused_until {
            if t > now {
                return Gate::Until(t);
            }
            self.paused_until = None;
        }
        if let Some(w) = self.window {
            if w.expired(now) {
                self.window = None;
            } else if let Some(t) = w.wait(now) {
                return Gate::Until(t);
            }
        }
        if self.probing && self.probe_out {
            return Gate::WaitProbe;
        }
        if let Some(t) = self.pacer.wait_until(now) {
            return Gate::Until(t);
        }
        Gate::Go
    }

    fn pause(&mut self, until: Instant) {
        if self.paused_until.is_none_or(|t| t < until) {
            self.paused_until = Some(until);
        }
    }

    /// Multiplies the limit by `num/den` (at least `floor`, at least 1), once per round of
    /// requests (`sent_in_epoch` is the epoch the failed request was sent in).
    fn decrease(&mut self, slots: &Semaphore, num: usize, den: usize, floor: usize) {
        let new = (self.limit * num / den).max(floor).max(1).min(self.limit);
        let cut = self.limit - new;
        self.limit = new;
        let forgotten = slots.forget_permits(cut);
        self.debt += cut - forgotten;
        self.successes = 0;
        self.epoch += 1;
    }

    fn increase(&mut self, slots: &Semaphore, max: usize) {
        self.successes += 1;
        if self.limit < max && self.successes >= self.limit {
            self.successes = 0;
            self.limit += 1;
            if self.debt > 0 {
                self.debt -= 1;
            } else {
                slots.add_permits(1);
            }
        }
    }
}

/// How an attempt ended, as the limiter needs to know it.
pub(crate) enum Outcome {
    /// A reply (headers already read).
    Success(RateInfo),
    /// HTTP 429, with the server's requested wait, if any.
    RateLimited {
        retry_after: Option<Duration>,
        policy: RetryPolicy,
    },
    /// HTTP 503: the server is overloaded.
    Overloaded,
    /// Any other failure.
    Failed,
}

impl Outcome {
    /// How a failed attempt ended, as the limiter counts it: a 429 (with the server's wait), a
    /// 503, or any other failure.
    pub fn of_failure(e: &super::ProviderError, policy: RetryPolicy) -> Outcome {
        match e.status() {
            Some(429) => Outcome::RateLimited {
                retry_after: e.retry_after(),
                policy,
            },
            Some(503) => Outcome::Overloaded,
            _ => Outcome::Failed,
        }
    }
}

impl Endpoint {
    fn new(connection: String, endpoint: String, model: Option<String>, max: usize) -> Self {
        Endpoint {
            connection,
            endpoint,
            model,
            max,
            slots: Semaphore::new(max),
            state: Mutex::new(State {
                limit: max,
                debt: 0,
                in_flight: 0,
                successes: 0,
                epoch: 0,
                paused_until: None,
                window: None,
                probing: false,
                probe_out: false,
                consecutive_429: 0,
                requests: 0,
                rate_limited: 0,
                pacer: Pacer::new(),
            }),
            wake: Notify::new(),
            retries: AtomicU64::new(0),
            waiting: AtomicUsize::new(0),
        }
    }

    /// How busy the endpoint is right now.
    pub fn load(&self) -> Load {
        let s = self.lock();
        let now = Instant::now();
        let blocked_until = [s.paused_until, s.window.and_then(|w| w.wait(now))]
            .into_iter()
            .flatten()
            .filter(|t| *t > now)
            .max();
        Load {
            busy: s.in_flight + self.waiting.load(Ordering::Relaxed),
            limit: s.limit,
            blocked_until,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits (FIFO) for an in-flight slot and for the endpoint's pauses and quota; the returned
    /// permit must be completed with the attempt's [`Outcome`] (dropping it counts as a failure).
    pub async fn acquire(self: &Arc<Self>) -> Permit {
        let _waiting = WaitingGuard::enter(&self.waiting);
        let holds_slot = match self.slots.acquire().await {
            Ok(p) => {
                p.forget();
                true
            }
            Err(_) => false, // never closed
        };
        let mut permit = Permit {
            ep: self.clone(),
            holds_slot,
            dispatched: false,
            probe: false,
            epoch: 0,
            seq: 0,
            sent_at: Instant::now(),
        };
        loop {
            let notified = self.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let until = {
                let mut s = self.lock();
                match s.gate(Instant::now()) {
                    Gate::Go => {
                        s.in_flight += 1;
                        s.requests += 1;
                        permit.seq = s.requests;
                        let now = Instant::now();
                        if let Some(w) = &mut s.window {
                            w.take(now);
                        }
                        if s.probing {
                            s.probe_out = true;
                            permit.probe = true;
                        }
                        s.pacer.dispatched(now);
                        permit.epoch = s.epoch;
                        permit.sent_at = now;
                        permit.dispatched = true;
                        return permit;
                    }
                    Gate::Until(t) => Some(t),
                    Gate::WaitProbe => None,
                }
            };
            match until {
                Some(t) => tokio::select! {
                    _ = tokio::time::sleep_until(t) => {}
                    _ = notified => {}
                },
                None => notified.await,
            }
        }
    }

    /// Counts a retry (for the stats).
    pub fn note_retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    fn stats(&self) -> LimiterStats {
        let s = self.lock();
        let now = Instant::now();
        let paused = [s.paused_until, s.window.and_then(|w| w.wait(now))]
            .into_iter()
            .flatten()
            .filter(|t| *t > now)
            .max();
        LimiterStats {
            connection: self.connection.clone(),
            endpoint: self.endpoint.clone(),
            model: self.model.clone(),
            limit: s.limit,
            max_in_flight: self.max,
            in_flight: s.in_flight,
            requests: s.requests,
            rate_limited: s.rate_limited,
            retries: self.retries.load(Ordering::Relaxed),
            paused_for: paused.map(|t| t - now),
        }
    }
}

/// Counts a request as waiting for as long as it is alive (also when the wait is cancelled).
struct WaitingGuard<'a>(&'a AtomicUsize);

impl<'a> WaitingGuard<'a> {
    fn enter(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        WaitingGuard(counter)
    }
}

impl Drop for WaitingGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An in-flight slot of an endpoint, held for one attempt.
#[derive(Debug)]
pub(crate) struct Permit {
    ep: Arc<Endpoint>,
    holds_slot: bool,
    dispatched: bool,
    probe: bool,
    epoch: u64,
    /// The endpoint's request count when this one was sent (`State::requests`).
    seq: u64,
    sent_at: Instant,
}

impl Permit {
    /// Reports how the attempt ended and frees the slot.
    pub fn complete(mut self, outcome: Outcome) {
        self.finish(outcome);
    }

    fn finish(&mut self, outcome: Outcome) {
        let ep = &self.ep;
        let mut s = ep.lock();
        let now = Instant::now();
        let mut wake = false;
        if self.dispatched {
            self.dispatched = false;
            let others = s.in_flight.saturating_sub(1);
            s.in_flight = others;
            let answered = !matches!(outcome, Outcome::Failed);
            match outcome {
                Outcome::Success(info) => {
                    s.consecutive_429 = 0;
                    s.increase(&ep.slots, ep.max);
                    s.pacer
                        .on_success(now, now.saturating_duration_since(self.sent_at));
                    if let (Some(r), Some(reset)) = (info.remaining_requests, info.reset_requests) {
                        s.pacer.off = true;
                        let known = s.window.and_then(|w| w.refill);
                        s.window = Some(quota_window(
                            &info,
                            r,
                            reset,
                            now,
                            self.sent_at,
                            s.requests.saturating_sub(self.seq),
                            others,
                            known,
                        ));
                        wake = true;
                    }
                    if let (Some(0), Some(reset)) = (info.remaining_tokens, info.reset_tokens) {
                        s.pause(now + reset);
                    }
                }
                Outcome::RateLimited {
                    retry_after,
                    policy,
                } => {
                    s.rate_limited += 1;
                    let wait = policy.delay(s.consecutive_429, retry_after);
                    s.consecutive_429 = s.consecutive_429.saturating_add(1);
                    s.pause(now + wait);
                    s.window = None;
                    s.probing = true;
                    if self.epoch == s.epoch {
                        let needed = s.pacer.on_429(now);
                        s.decrease(&ep.slots, 1, 2, needed);
                    }
                }
                Outcome::Overloaded if self.epoch == s.epoch => s.decrease(&ep.slots, 3, 4, 1),
                Outcome::Overloaded => {}
                Outcome::Failed => {}
            }
            if self.probe {
                self.probe = false;
                s.probe_out = false;
                if answered && s.paused_until.is_none_or(|t| t <= now) {
                    s.probing = false;
                }
                wake = true;
            }
        }
        if self.holds_slot {
            self.holds_slot = false;
            if s.debt > 0 {
                s.debt -= 1;
            } else {
                ep.slots.add_permits(1);
            }
        }
        drop(s);
        if wake {
            ep.wake.notify_waiters();
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.dispatched || self.holds_slot {
            self.finish(Outcome::Failed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_durations_parse() {
        let ms = Duration::from_millis;
        assert_eq!(parse_reset("1s"), Some(ms(1000)));
        assert_eq!(parse_reset("6m0s"), Some(ms(360_000)));
        assert_eq!(parse_reset("20ms"), Some(ms(20)));
        assert_eq!(parse_reset("1m30.5s"), Some(ms(90_500)));
        assert_eq!(parse_reset("2h"), Some(ms(7_200_000)));
        assert_eq!(parse_reset("0.25"), Some(ms(250)));
        assert_eq!(parse_reset(""), None);
        assert_eq!(parse_reset("soon"), None);
        assert_eq!(parse_reset("5 parsecs"), None);
        assert_eq!(parse_count("12"), Some(12));
        assert_eq!(parse_count("3.7"), Some(3));
        assert_eq!(parse_count("-1"), None);
    }

    #[test]
    fn headers_are_read() {
        let mut h = HeaderMap::new();
        h.insert("x-ratelimit-remaining-requests", "0".parse().unwrap());
        h.insert("x-ratelimit-reset-requests", "250ms".parse().unwrap());
        h.insert("x-ratelimit-remaining-tokens", "900".parse().unwrap());
        let info = RateInfo::from_headers(&h);
        assert_eq!(info.remaining_requests, Some(0));
        assert_eq!(info.reset_requests, Some(Duration::from_millis(250)));
        assert_eq!(info.remaining_tokens, Some(900));
        assert_eq!(info.reset_tokens, None);
    }

    fn quota(limit: Option<u64>) -> RateInfo {
        RateInfo {
            limit_requests: limit,
            ..RateInfo::default()
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-6
    }

    #[test]
    fn the_refill_rate_is_a_lower_bound_despite_the_headers_rounding() {
        let ms = Duration::from_millis;
        // 10 missing of 20 in "8ms" (really 8–9 ms, 10–11 missing): at least 9 per 9 ms.
        assert!(close(refill_bound(20, 10, ms(8)).unwrap(), 1000.0));
        // Nothing or one missing says nothing about the rate.
        assert_eq!(refill_bound(20, 20, ms(0)), None);
        assert_eq!(refill_bound(20, 19, ms(1)), None);
        assert_eq!(refill_bound(20, 25, ms(1)), None);
        // Past a minute the reset is whole seconds.
        assert!(close(
            refill_bound(10_001, 0, ms(119_000)).unwrap(),
            10_000.0 / 120.0
        ));
    }

    #[test]
    fn a_quota_that_refills_lets_the_next_request_go_when_one_request_is_back() {
        let ms = Duration::from_millis;
        let now = Instant::now();
        // 11 requests, none left, full again in 25 ms: at least 10 per 26 ms, sent just now.
        let w = quota_window(&quota(Some(11)), 0, ms(25), now, now, 0, 0, None);
        let rate = 10.0 / 0.026;
        assert!(close(w.refill.unwrap(), rate));
        let next = w.wait(now).unwrap();
        assert!(
            next - now >= ms(2) && next - now <= ms(3),
            "{:?}",
            next - now
        );
        assert_eq!(w.wait(now + ms(3)), None);
        // A window that knows its rate does not expire at the reset; it refills to its limit.
        assert!(!w.expired(now + ms(100)));
        assert!(close(w.available(now + ms(100)), 11.0));
        // A later reply with a poorer bound keeps the better one.
        let w2 = quota_window(&quota(Some(11)), 8, ms(20), now, now, 0, 0, w.refill);
        assert!(close(w2.refill.unwrap(), rate));
        // Without the limit, the whole quota comes back only at the reset, and then the window
        // says nothing more.
        let w = quota_window(&quota(None), 0, ms(25), now, now, 0, 0, Some(rate));
        assert_eq!(w.refill, None);
        assert_eq!(w.wait(now), Some(now + ms(25)));
        assert!(w.expired(now + ms(25)));
    }

    #[test]
    fn a_quota_counts_requests_sent_after_the_reply_was_counted_and_refills_since() {
        let ms = Duration::from_millis;
        let sent = Instant::now();
        let now = sent + ms(50);
        // The server had 5 left of 12 when the request reached it, full in 35 ms: at least
        // 6 per 36 ms. 50 ms refilled it to the limit; 14 requests went out after it.
        let rate = 6.0 / 0.036;
        let mut w = quota_window(&quota(Some(12)), 5, ms(35), now, sent, 14, 40, None);
        assert!(close(w.refill.unwrap(), rate));
        assert!(close(w.remaining, 12.0 - 14.0), "{}", w.remaining);
        // 2 requests behind: the next goes once 3 are back.
        let wait = (w.wait(now).unwrap() - now).as_secs_f64();
        assert!((wait - 3.0 / rate).abs() < 1e-3, "{wait}");
        // A dispatch takes one request; refilling stops at the limit.
        w.take(now + ms(5));
        assert!(
            close(w.remaining, -2.0 + rate * 0.005 - 1.0),
            "{}",
            w.remaining
        );
        w.take(now + ms(200));
        assert!(close(w.remaining, 12.0 - 1.0), "{}", w.remaining);
        // Without the limit: what the server had, less every request still on the wire.
        let w = quota_window(&quota(None), 5, ms(35), now, sent, 30, 4, None);
        assert!(close(w.remaining, 1.0));
        assert_eq!(w.wait(now), None);
    }

    fn ep(max: usize) -> Arc<Endpoint> {
        Arc::new(Endpoint::new("c".into(), "http://x".into(), None, max))
    }

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_retries: 3,
            base: Duration::from_millis(1),
            cap: Duration::from_millis(5),
        }
    }

    #[tokio::test]
    async fn aimd_halves_once_per_round_and_recovers() {
        let e = ep(8);
        let permits: Vec<Permit> = futures::future::join_all((0..8).map(|_| e.acquire())).await;
        assert_eq!(e.stats().in_flight, 8);
        for p in permits {
            p.complete(Outcome::RateLimited {
                retry_after: Some(Duration::ZERO),
                policy: policy(),
            });
        }
        // Eight 429s from one round cut the limit once.
        let st = e.stats();
        assert_eq!((st.limit, st.in_flight, st.rate_limited), (4, 0, 8));
        assert_eq!(e.slots.available_permits(), 4);
        // A probe goes first; then additive increase back to the maximum.
        for _ in 0..40 {
            e.acquire()
                .await
                .complete(Outcome::Success(RateInfo::default()));
        }
        assert_eq!(e.stats().limit, 8);
        assert_eq!(e.slots.available_permits(), 8);
    }

    #[tokio::test]
    async fn cut_while_slots_are_taken_is_repaid_on_release() {
        let e = ep(4);
        let a = e.acquire().await;
        let b = e.acquire().await;
        let c = e.acquire().await;
        let d = e.acquire().await;
        a.complete(Outcome::Overloaded); // 4 * 3/4 = 3: one slot owed
        assert_eq!(e.stats().limit, 3);
        assert_eq!(e.slots.available_permits(), 0);
        drop(b); // dropped = failed, pays the debt
        assert_eq!(e.slots.available_permits(), 1);
        c.complete(Outcome::Failed);
        d.complete(Outcome::Failed);
        assert_eq!(e.slots.available_permits(), 3);
        assert_eq!(e.stats().in_flight, 0);
    }

    #[test]
    fn pacer_learns_from_successes_then_slows_and_stops() {
        let mut p = Pacer::new();
        let t0 = Instant::now();
        for i in 0..100u64 {
            p.on_success(
                t0 + Duration::from_millis(i * 10),
                Duration::from_millis(100),
            );
        }
        let now = t0 + Duration::from_secs(1);
        let needed = p.on_429(now);
        let rate = p.rate.unwrap();
        assert!((80.0..=95.0).contains(&rate), "{rate}");
        assert!((15..=25).contains(&needed), "{needed}");
        p.dispatched(now);
        let next = p.wait_until(now).unwrap();
        assert!(next - now >= Duration::from_secs_f64(1.0 / rate) - Duration::from_micros(1));
        p.on_429(now);
        assert!((p.rate.unwrap() - rate * 0.8).abs() < 1e-9);
        p.on_success(now + PACE_FOR + Duration::from_secs(1), Duration::ZERO);
        assert_eq!(p.rate, None);
        assert_eq!(p.wait_until(now), None);
    }

    #[tokio::test]
    async fn exhausted_quota_holds_until_reset() {
        let e = ep(4);
        let info = RateInfo {
            remaining_requests: Some(0),
            reset_requests: Some(Duration::from_millis(150)),
            ..RateInfo::default()
        };
        e.acquire().await.complete(Outcome::Success(info));
        assert!(e.stats().paused_for.is_some());
        let t = std::time::Instant::now();
        e.acquire()
            .await
            .complete(Outcome::Success(RateInfo::default()));
        assert!(
            t.elapsed() >= Duration::from_millis(140),
            "{:?}",
            t.elapsed()
        );
    }

    #[tokio::test]
    async fn after_a_429_only_one_probe_goes() {
        let e = ep(4);
        e.acquire().await.complete(Outcome::RateLimited {
            retry_after: Some(Duration::from_millis(30)),
            policy: policy(),
        });
        let probe = e.acquire().await;
        assert!(probe.probe);
        let second = tokio::time::timeout(Duration::from_millis(80), e.acquire()).await;
        assert!(
            second.is_err(),
            "a second request went out during the probe"
        );
        probe.complete(Outcome::Success(RateInfo::default()));
        let next = tokio::time::timeout(Duration::from_millis(500), e.acquire())
            .await
            .expect("released after the probe succeeded");
        assert!(!next.probe);
    }
}
