//! Sends a call to its model's deployments in turn (see
//! `providers::deployment`): before the first byte reaches the caller, a
//! connection error, a timeout, a 429 or a 5xx moves it to the next, within
//! the model's budget of attempts and time. After the first byte nothing
//! is retried: a caller never sees text twice. The hold stays through the
//! attempts and the call is billed once, for the answer the caller gets; a
//! key answered 429 rests for its `retry-after`.

use super::downstream::caller_left;
use super::outcome::{client_gone, Failure};
use super::pool::Upstreams;
use super::upstream::{peer_of, send_request, upstream_head};
use super::RequestCtx;
use crate::billing::Clock;
use crate::error::GatewayError;
use crate::exchange::{cap_output, plan_on, UpstreamPlan};
use crate::gateway::{Gateway, ModelEntry};
use crate::providers::breaker::BreakerRules;
use crate::providers::deployment::attempt_order;
use crate::routing::Route;
use bytes::Bytes;
use pingora_core::protocols::http::client::HttpSession;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_proxy::Session;
use std::sync::Arc;

/// What planning the call again on another deployment needs.
pub struct Replan<'a> {
    pub gateway: &'a Gateway,
    pub route: &'a Route,
    pub body: Bytes,
    pub query: Option<&'a str>,
    pub headers: http::HeaderMap,
}

/// Rests a key answered 429 this long when the provider said nothing.
const DEFAULT_REST_MS: u64 = 1_000;

/// The call sent to the first deployment that answered (its plan now in
/// `plan`), or the last attempt's error.
pub async fn send(
    connector: &Upstreams,
    session: &mut Session,
    ctx: &mut RequestCtx,
    plan: &mut UpstreamPlan,
    replan: Option<Replan<'_>>,
) -> Result<(HttpSession, Arc<HttpPeer>), Failure> {
    let model = plan.model.clone();
    // `replan` comes only with a model of several deployments.
    let Some(replan) = replan else {
        return send_once(connector, session, ctx, plan).await;
    };
    let deployments: Vec<&Arc<ModelEntry>> = std::iter::once(&model).chain(&model.alternates).collect();
    let weights: Vec<Option<u32>> = deployments.iter().map(|d| d.deployment.weight).collect();
    let order = attempt_order(&weights, random_fraction());
    let rules = BreakerRules {
        failures: model.failover.breaker_failures,
        cooldown_ms: model.failover.breaker_cooldown_ms,
    };
    let budget = std::time::Duration::from_millis(model.failover.budget_ms);
    let attempts = model.failover.attempts.max(1) as usize;
    let mut last: Option<Failure> = None;
    let mut tried = 0;
    for (n, &i) in order.iter().enumerate() {
        let entry = deployments[i];
        let label = entry.deployment.label.as_str();
        if tried >= attempts || (tried > 0 && ctx.started.elapsed() >= budget) {
            break;
        }
        let now = crate::billing::SystemClock.now_ms();
        let Some(in_flight) = entry.deployment.take(now) else {
            crate::metrics::deployment_attempt(&model.id, label, "skipped");
            continue;
        };
        if !Arc::ptr_eq(entry, &plan.model) {
            let mut next = plan_on(
                replan.gateway,
                replan.route,
                replan.body.clone(),
                replan.query,
                &replan.headers,
                &ctx.request_id,
                entry,
                plan,
            )?;
            if let Some(bill) = &ctx.bill {
                cap_output(&mut next, &bill.1)?;
            }
            *plan = next;
        }
        tried += 1;
        let more = tried < attempts && n + 1 < order.len();
        let failed = match send_once(connector, session, ctx, plan).await {
            Ok((mut upstream, peer)) => {
                let (head, status, _) = upstream_head(&upstream)?;
                if !(status == 429 || status >= 500) || !more {
                    if status < 500 && status != 429 {
                        entry.deployment.succeeded();
                    }
                    crate::metrics::deployment_attempt(
                        &model.id,
                        label,
                        if status < 400 { "served" } else { "failed" },
                    );
                    ctx.deployment = Some(Box::new((label.to_string(), in_flight)));
                    return Ok((upstream, peer));
                }
                if status == 429 {
                    let rest = retry_after_ms(head).unwrap_or(DEFAULT_REST_MS);
                    plan.provider.rest_key(&plan.headers, now.saturating_add(rest));
                }
                upstream.shutdown().await;
                Failure::Refused(GatewayError::Upstream {
                    status,
                    message: format!("{label} answered {status}"),
                })
            }
            Err(Failure::Refused(
                e @ (GatewayError::UpstreamUnavailable(_) | GatewayError::UpstreamTimeout),
            )) => Failure::Refused(e),
            Err(other) => return Err(other),
        };
        if entry.deployment.failed(now, rules) {
            crate::metrics::circuit_opened(label);
            if let Some(hot) = replan.gateway.hot.clone() {
                let (label, until) = (label.to_string(), now.saturating_add(rules.cooldown_ms));
                tokio::spawn(async move {
                    if let Err(e) = hot.redis.announce_circuit(&label, until).await {
                        log::warn!(target: "tollgate", "the fleet was not told {label}'s circuit opened: {e}");
                    }
                });
            }
            log::warn!(target: "tollgate", "{}: the circuit of {label} opened for {} ms", ctx.request_id, rules.cooldown_ms);
        }
        crate::metrics::deployment_attempt(&model.id, label, "failed_over");
        log::info!(target: "tollgate", "{}: {label} failed before the first byte; trying the next deployment", ctx.request_id);
        last = Some(failed);
    }
    Err(last.unwrap_or_else(|| {
        Failure::Refused(GatewayError::UpstreamUnavailable(format!(
            "every deployment of {} is unavailable (circuits open or at their in-flight limit)",
            model.id
        )))
    }))
}

/// One attempt: connected, sent, and the response head read.
async fn send_once(
    connector: &Upstreams,
    session: &mut Session,
    ctx: &mut RequestCtx,
    plan: &UpstreamPlan,
) -> Result<(HttpSession, Arc<HttpPeer>), Failure> {
    ctx.provider = Some(plan.provider.name.clone());
    let peer = peer_of(&plan.provider).await?;
    // `send` runs boxed (not part of every open stream's memory), and a
    // connect future is built only on a pool miss (see `super::pool`).
    let sent = tokio::select! {
        sent = send_request(connector, &peer, plan) => sent,
        gone = caller_left(session) => return Err(client_gone(gone)),
    };
    Ok((sent?, peer))
}

/// A number in [0, 1) that differs from call to call.
fn random_fraction() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let bits = std::collections::hash_map::RandomState::new().build_hasher().finish() >> 11;
    bits as f64 / (1u64 << 53) as f64
}

/// A 429's `retry-after`, in seconds (a date is not read: the default).
fn retry_after_ms(head: &pingora_http::ResponseHeader) -> Option<u64> {
    let seconds: f64 = head.headers.get(http::header::RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| (seconds * 1000.0).min(3_600_000.0) as u64)
}
