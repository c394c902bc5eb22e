//! Endpoint pools: one connection that spreads its requests over several deployments
//! (`X_POOL=member_a,member_b` in `.env`), so their quotas add up.
//!
//! Each member keeps its own adaptive limiter (`limiter.rs`). A request goes to the member with
//! the most free in-flight slots right now (ties taken in turn), so load follows capacity: a
//! member whose limit was cut by 429s, or whose slower replies keep its slots busy, gets less.
//! A member that is paused by its limiter (after a 429 or a spent quota) is passed over while
//! another member is free.
//!
//! A member that fails (a 5xx, a timeout, a dropped connection, or an unusable endpoint: bad key,
//! unknown deployment, nothing listening) is backed off: no request goes to it for 0.5 s,
//! doubling with each further failure up to 30 s. Then one probe request may go to it; when the
//! probe succeeds the member is used again. A request whose attempt failed on a member is
//! retried at once on another member (no sleep), never twice in a row on the one that failed
//! while another is usable. Only when every member is backed off does a request wait, for the
//! member that recovers first.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use tokio::time::Instant;

use super::limiter::{self, Load};
use super::{DeltaFn, LlmClient, LlmRequest, LlmResponse, ProviderError, Retries};
use super::{anthropic, http, openai};
use crate::connection::{ApiType, Connection};

/// First back-off of a failed member.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// Longest back-off of a failed member.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The health of every pool's members, keyed by pool name.
#[derive(Debug, Default)]
pub(crate) struct Pools {
    map: RwLock<HashMap<String, Arc<PoolState>>>,
}

impl Pools {
    /// The state of `pool`, created on first use.
    pub fn get(&self, pool: &Connection) -> Arc<PoolState> {
        if let Some(s) = self
            .map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&pool.name)
        {
            return s.clone();
        }
        self.map
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(pool.name.clone())
            .or_insert_with(|| Arc::new(PoolState::new(pool.pool.len())))
            .clone()
    }
}

/// One pool's members' health and the turn counter for ties.
#[derive(Debug)]
pub(crate) struct PoolState {
    health: Mutex<Vec<Health>>,
    turn: AtomicUsize,
}

#[derive(Debug, Clone, Copy, Default)]
struct Health {
    /// Failures since the last success.
    failures: u32,
    /// No request before this (after a failure).
    backed_off_until: Option<Instant>,
    /// A probe request is out after a back-off; others keep away until it answers.
    probe_out: bool,
}

/// Whether a member may take a request now, and as what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Availability {
    Healthy,
    /// Back-off over: may take one probe.
    Probe,
    /// Backed off (or its probe is out) until then.
    Unavailable(Option<Instant>),
}

impl Health {
    fn availability(&self, now: Instant) -> Availability {
        match self.backed_off_until {
            None => Availability::Healthy,
            Some(t) if t > now => Availability::Unavailable(Some(t)),
            Some(_) if self.probe_out => Availability::Unavailable(None),
            Some(_) => Availability::Probe,
        }
    }
}

/// The member a request goes to, and whether it is the probe of a backed-off member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Choice {
    pub member: usize,
    pub probe: bool,
}

impl PoolState {
    fn new(members: usize) -> Self {
        PoolState {
            health: Mutex::new(vec![Health::default(); members]),
            turn: AtomicUsize::new(0),
        }
    }

    /// Picks the member for the next attempt from each member's current `loads`, never
    /// `exclude` (the member the last attempt failed on) while another is usable. `Err` is the
    /// time to wait when every member is backed off.
    pub fn choose(&self, loads: &[Load], exclude: Option<usize>) -> Result<Choice, Instant> {
        let now = Instant::now();
        let mut health = self.health.lock().unwrap_or_else(PoisonError::into_inner);
        let n = health.len().min(loads.len());
        let turn = self.turn.fetch_add(1, Ordering::Relaxed);
        // Best candidate: usable, not excluded (unless alone), not paused by its limiter, most
        // free slots; ties by turn.
        let mut best: Option<(usize, (bool, bool, i64, usize))> = None;
        let mut earliest: Option<Instant> = None;
        for k in 0..n {
            let i = (turn + k) % n;
            if let Availability::Unavailable(t) = health[i].availability(now) {
                let t = t.unwrap_or(now + FIRST_BACKOFF);
                earliest = Some(earliest.map_or(t, |e: Instant| e.min(t)));
                continue;
            }
            let load = loads[i];
            let score = (
                Some(i) != exclude,
                load.blocked_until.is_none(),
                load.free(),
                n - k, // earlier in this turn's order wins ties
            );
            if best.as_ref().is_none_or(|(_, s)| score > *s) {
                best = Some((i, score));
            }
        }
        match best {
            Some((member, _)) => {
                let probe = health[member].availability(now) == Availability::Probe;
                if probe {
                    health[member].probe_out = true;
                }
                Ok(Choice { member, probe })
            }
            None => Err(earliest.unwrap_or(now + FIRST_BACKOFF)),
        }
    }

    /// The member answered.
    pub fn succeeded(&self, member: usize) {
        let mut health = self.health.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(h) = health.get_mut(member) {
            *h = Health::default();
        }
    }

    /// The member failed in a way that is its own fault (not the request's): back it off.
    pub fn failed(&self, member: usize) {
        let now = Instant::now();
        let mut health = self.health.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(h) = health.get_mut(member) {
            // Requests that were already in flight when the member went down fail together:
            // they fall within the current back-off, they do not double it.
            if h.backed_off_until.is_some_and(|t| t > now) {
                return;
            }
            h.failures = h.failures.saturating_add(1);
            let factor = 1u32 << (h.failures - 1).min(6);
            let backoff = (FIRST_BACKOFF * factor).min(MAX_BACKOFF);
            h.backed_off_until = Some(now + backoff);
            h.probe_out = false;
        }
    }

    /// An attempt that was a probe ended without telling anything about the member (the request
    /// itself was bad, or it was rate limited): let another probe go.
    pub fn probe_inconclusive(&self, member: usize) {
        let mut health = self.health.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(h) = health.get_mut(member) {
            h.probe_out = false;
        }
    }

    /// Members currently backed off (for tests and stats).
    #[cfg(test)]
    fn backed_off(&self) -> Vec<bool> {
        let now = Instant::now();
        self.health
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|h| h.availability(now) != Availability::Healthy)
            .collect()
    }
}

/// A failure that says the member is unwell rather than that the request is wrong: retryable
/// failures other than 429 (5xx, timeouts, dropped connections) and unusable endpoints.
fn member_fault(e: &ProviderError) -> bool {
    (e.is_retryable() && e.status() != Some(429)) || e.endpoint_unusable()
}

impl LlmClient {
    /// [`LlmClient::complete`] for a pool: each attempt goes to the member with the most free
    /// capacity; a failed attempt is retried at once on another member.
    pub(crate) async fn complete_pooled(
        &self,
        pool: &Connection,
        req: &LlmRequest,
        on_delta: Option<DeltaFn<'_>>,
    ) -> Result<LlmResponse, ProviderError> {
        let state = self.pools.get(pool);
        let members = &pool.pool;
        // Each member's request (URL, headers, body) and limiter, prepared on first use.
        let mut prepared: Vec<Option<(super::Prepared, Arc<limiter::Endpoint>)>> =
            members.iter().map(|_| None).collect();
        let mut exclude = None;
        let mut tries = Retries::default();
        // Moving to another member costs no wait but is bounded, so a pool of dead members
        // still gives up.
        let mut failovers = 0usize;
        let max_failovers = members.len() * (self.config.retry.max_retries as usize + 1);
        loop {
            let loads: Vec<Load> = members
                .iter()
                .enumerate()
                .map(|(i, m)| match &prepared[i] {
                    Some((_, ep)) => ep.load(),
                    None => self.limiters.get(m, m_model(m, req).as_deref()).load(),
                })
                .collect();
            let choice = match state.choose(&loads, exclude) {
                Ok(c) => c,
                Err(until) => {
                    tokio::time::sleep_until(until).await;
                    continue;
                }
            };
            let i = choice.member;
            let member = &members[i];
            if prepared[i].is_none() {
                let p = match member.api_type {
                    ApiType::Anthropic => anthropic::prepare(member, req),
                    ApiType::Echo => {
                        state.succeeded(i);
                        let mut resp = super::echo::complete(req, on_delta);
                        resp.served_by = Some(member.name.clone());
                        return Ok(resp);
                    }
                    ApiType::OpenAi | ApiType::Azure | ApiType::Ollama => {
                        openai::prepare(member, req)
                    }
                    ApiType::Custom => Err(super::no_model_endpoint(member)),
                };
                let p = match p {
                    Ok(p) => p,
                    Err(e) => {
                        if choice.probe {
                            state.probe_inconclusive(i);
                        }
                        return Err(e);
                    }
                };
                let ep = self.limiters.get(member, p.model.as_deref());
                prepared[i] = Some((p, ep));
            }
            let Some((p, ep)) = &prepared[i] else {
                continue;
            };
            let mut emitted = false;
            let mut rate = limiter::RateInfo::default();
            let permit = ep.acquire().await;
            let result =
                http::attempt(self, member, req, p, on_delta, &mut emitted, &mut rate).await;
            match result {
                Ok(mut resp) => {
                    permit.complete(limiter::Outcome::Success(rate));
                    state.succeeded(i);
                    resp.retries = tries.total();
                    resp.served_by = Some(member.name.clone());
                    return Ok(resp);
                }
                Err(e) => {
                    let fault = member_fault(&e);
                    if fault {
                        state.failed(i);
                    } else if choice.probe {
                        state.probe_inconclusive(i);
                    }
                    let others_usable = members.len() > 1;
                    let can_fail_over = !emitted
                        && others_usable
                        && (fault || e.status() == Some(429))
                        && failovers < max_failovers;
                    if can_fail_over {
                        failovers += 1;
                        exclude = Some(i);
                        tries.failed_over(ep, permit, &e, self.config.retry);
                        continue;
                    }
                    exclude = Some(i);
                    tries.after_failure(self, ep, permit, e, !emitted).await?;
                }
            }
        }
    }

    /// [`LlmClient::embed`] for a pool: the member with the most free capacity embeds; on a
    /// failure that is the member's fault the next member is tried.
    pub(crate) async fn embed_pooled(
        &self,
        pool: &Connection,
        model: Option<&str>,
        inputs: &[String],
    ) -> Result<super::embeddings::Embedded, ProviderError> {
        let state = self.pools.get(pool);
        let members = &pool.pool;
        let mut exclude = None;
        let mut last = None;
        for _ in 0..members.len() {
            let loads: Vec<Load> = members
                .iter()
                .map(|m| self.limiters.get(m, model).load())
                .collect();
            let choice = match state.choose(&loads, exclude) {
                Ok(c) => c,
                Err(until) => {
                    tokio::time::sleep_until(until).await;
                    continue;
                }
            };
            let i = choice.member;
            match Box::pin(self.embed_detailed(&members[i], model, inputs)).await {
                Ok(mut v) => {
                    state.succeeded(i);
                    v.served_by = Some(members[i].name.clone());
                    return Ok(v);
                }
                Err(e) if member_fault(&e) => {
                    state.failed(i);
                    exclude = Some(i);
                    last = Some(e);
                }
                Err(e) => {
                    if choice.probe {
                        state.probe_inconclusive(i);
                    }
                    return Err(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| ProviderError::Config {
            connection: pool.name.clone(),
            message: "no member of the pool could be used".into(),
        }))
    }
}

/// The model a member's limiter is keyed by before the request is prepared (the same
/// `prepare` computes: the request's model, else the member's deployment or model).
fn m_model(member: &Connection, req: &LlmRequest) -> Option<String> {
    super::target(member, req).ok().and_then(|t| t.model)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(busy: usize, limit: usize) -> Load {
        Load {
            busy,
            limit,
            blocked_until: None,
        }
    }

    #[tokio::test]
    async fn the_member_with_most_free_slots_wins() {
        let s = PoolState::new(3);
        let loads = [load(10, 16), load(2, 16), load(8, 16)];
        for _ in 0..5 {
            assert_eq!(s.choose(&loads, None).unwrap().member, 1);
        }
    }

    #[tokio::test]
    async fn ties_are_taken_in_turn() {
        let s = PoolState::new(3);
        let loads = [load(0, 8), load(0, 8), load(0, 8)];
        let picks: Vec<usize> = (0..6)
            .map(|_| s.choose(&loads, None).unwrap().member)
            .collect();
        let mut seen = picks.clone();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen, vec![0, 1, 2], "{picks:?}");
    }

    #[tokio::test]
    async fn a_paused_member_is_passed_over_while_another_is_free() {
        let s = PoolState::new(2);
        let mut paused = load(0, 64);
        paused.blocked_until = Some(Instant::now() + Duration::from_secs(5));
        let loads = [paused, load(60, 64)];
        assert_eq!(s.choose(&loads, None).unwrap().member, 1);
    }

    #[tokio::test]
    async fn the_failed_member_is_not_chosen_again_at_once() {
        let s = PoolState::new(2);
        let loads = [load(0, 64), load(50, 64)];
        assert_eq!(s.choose(&loads, Some(0)).unwrap().member, 1);
        // Alone, the excluded member is still used.
        let one = PoolState::new(1);
        assert_eq!(one.choose(&[load(0, 1)], Some(0)).unwrap().member, 0);
    }

    #[tokio::test]
    async fn a_failed_member_backs_off_then_takes_one_probe_then_recovers() {
        let s = PoolState::new(2);
        let loads = [load(0, 64), load(0, 64)];
        s.failed(0);
        assert_eq!(s.backed_off(), vec![true, false]);
        for _ in 0..4 {
            assert_eq!(s.choose(&loads, None).unwrap().member, 1);
        }
        tokio::time::sleep(FIRST_BACKOFF + Duration::from_millis(5)).await;
        // Member 0 is idle and the better choice: it gets exactly one probe.
        let loads = [load(0, 64), load(30, 64)];
        let probe = s.choose(&loads, None).unwrap();
        assert_eq!(
            probe,
            Choice {
                member: 0,
                probe: true
            }
        );
        assert_eq!(s.choose(&loads, None).unwrap().member, 1);
        s.succeeded(0);
        assert_eq!(s.backed_off(), vec![false, false]);
        assert_eq!(s.choose(&loads, None).unwrap().member, 0);
    }

    #[tokio::test]
    async fn back_off_doubles_and_is_capped() {
        let s = PoolState::new(1);
        let backoff = |s: &PoolState| {
            let Err(until) = s.choose(&[load(0, 1)], None) else {
                panic!("a backed-off lone member is not usable");
            };
            until - Instant::now()
        };
        s.failed(0);
        let first = backoff(&s);
        assert!(
            first <= FIRST_BACKOFF && first > FIRST_BACKOFF / 2,
            "{first:?}"
        );
        // Failures of requests already in flight do not double it.
        s.failed(0);
        assert!(backoff(&s) <= FIRST_BACKOFF);
        // Failures after each back-off do, up to the cap.
        let mut health = s.health.lock().unwrap();
        health[0].failures = 30;
        health[0].backed_off_until = Some(Instant::now());
        drop(health);
        s.failed(0);
        let capped = backoff(&s);
        assert!(capped <= MAX_BACKOFF && capped > MAX_BACKOFF - Duration::from_secs(1));
    }

    #[test]
    fn member_faults_are_server_side_failures_not_bad_requests() {
        let status = |status: u16| ProviderError::Status {
            connection: "c".into(),
            url: "u".into(),
            status,
            message: String::new(),
            retry_after: None,
        };
        assert!(member_fault(&status(500)));
        assert!(member_fault(&status(503)));
        assert!(!member_fault(&ProviderError::BadRequest {
            connection: "c".into(),
            url: "u".into(),
            status: 400,
            message: "bad".into(),
        }));
    }
}
