//! `Idempotency-Key` on a billed model call. A key is scoped to the API
//! key that made the call and bound to a fingerprint of the request
//! (SHA-256 of method, path and body). The first call claims it in the
//! store, one atomic step shared by every process on that store, and its
//! answer is captured as the caller receives it. A retry with the same
//! request gets a 409 while it runs and its answer once it completed,
//! unbilled; another request under the same key gets a 422. Callers reach
//! this only after the access rules, so a replay is refused whenever a
//! new call would be.

use crate::auth::Principal;
use crate::billing::replay::{Answer, Kept, Replays, Reservation, MAX_ANSWER_BYTES, WINDOW_MS};
use crate::billing::Clock as _;
use crate::error::GatewayError;
use crate::gateway::Gateway;
use crate::store::idempotency::{Claim, Claimed, Fingerprint, Held, Scope};
use crate::store::StoreHandle;
use sha2::{Digest, Sha256};
use std::sync::Arc;

pub static HEADER: http::HeaderName = http::HeaderName::from_static("idempotency-key");

/// What a call with a key does.
pub enum Retry {
    /// Run it, capturing its answer.
    Run(Box<Idempotent>),
    /// Answer with what the first call got.
    Replay(Arc<Answer>),
}

/// A call running under a key, and what its caller has been sent so far.
pub struct Idempotent {
    scope: Scope,
    fingerprint: Fingerprint,
    owner: String,
    replays: Arc<Replays>,
    store: StoreHandle,
    content_type: String,
    body: Vec<u8>,
    reserved: Reservation,
    /// The answer outgrew what may be kept: the key completes without it.
    unkept: bool,
    /// Keeps the running mark renewed while the call lives (dropped: it stops).
    _renewing: tokio::sync::oneshot::Sender<()>,
}

/// What binds a key to one request.
pub fn fingerprint(method: &str, path: &str, body: &[u8]) -> Fingerprint {
    let mut h = Sha256::new();
    // Method and path hold no NUL, so the parts cannot run into one another.
    h.update(method.as_bytes());
    h.update([0]);
    h.update(path.as_bytes());
    h.update([0]);
    h.update(body);
    h.finalize().into()
}

/// Claims `key` for the call `owner` of `principal` (`None`: no key, or
/// nothing is billed here), or says what a retry gets instead.
pub async fn begin(
    gateway: &Gateway,
    principal: &Principal,
    key: Option<String>,
    fingerprint: Fingerprint,
    owner: &str,
) -> Result<Option<Retry>, GatewayError> {
    let (Some(key), Some(money), Some(billed)) = (key, &gateway.money, &principal.billed) else {
        return Ok(None);
    };
    let key = key.trim().to_string();
    if key.is_empty() || key.len() > 255 {
        return Err(GatewayError::BadRequest("'Idempotency-Key' must be 1 to 255 characters".into()));
    }
    let scope = Scope { account: to_i64(billed.account), key_id: to_i64(billed.id), key };
    let replays = &money.replays;
    if let Some((kept_for, kept)) = replays.pending_answer(&scope) {
        return retry(fingerprint, kept_for, kept).map(Some);
    }
    // A key found running is asked for twice: once at once, and once more
    // after the answer's grace, in case its call ended meanwhile and the
    // answer went from this node's memory to the store between two looks.
    let mut graced = false;
    loop {
        let now = to_i64(replays.clock.now_ms());
        let claim = Claim {
            scope: scope.clone(),
            fingerprint,
            owner: owner.to_string(),
            now,
            expires_at: now.saturating_add(to_i64(replays.lease_ms)),
        };
        let claimed = money
            .store
            .run(move |s| async move { s.claim_key(&claim).await })
            .await
            .map_err(|e| GatewayError::Internal(e.to_string()))?;
        let held = match claimed {
            Claimed::Ours => {
                return Ok(Some(Retry::Run(Box::new(Idempotent {
                    _renewing: keep_running(&money.store, &scope, owner, replays),
                    scope,
                    fingerprint,
                    owner: owner.to_string(),
                    replays: replays.clone(),
                    store: money.store.clone(),
                    content_type: String::new(),
                    body: Vec::new(),
                    reserved: Reservation::new(replays.clone()),
                    unkept: false,
                }))))
            }
            Claimed::Theirs { fingerprint: theirs, .. } if theirs != fingerprint => {
                return Err(GatewayError::IdempotencyKeyReused)
            }
            Claimed::Theirs { held, .. } => held,
        };
        match held {
            Held::Running if !graced => {
                graced = true;
                if let Some((kept_for, kept)) = answer_being_kept(replays, &scope).await {
                    return retry(fingerprint, kept_for, kept).map(Some);
                }
            }
            Held::Running => return Err(GatewayError::IdempotencyConflict),
            Held::Unkept => return Err(GatewayError::IdempotentAnswerNotKept),
            Held::Done(answer) => return Ok(Some(Retry::Replay(Arc::new(answer)))),
        }
    }
}

/// How long a retry that finds its key running waits for this node to
/// keep the answer: the first call's answer is kept just after its last
/// byte is written, and a caller that retries the moment it has that byte
/// should get the replay, not a 409. A call still running past it is a
/// conflict.
const ANSWER_GRACE: std::time::Duration = std::time::Duration::from_millis(250);

/// The answer this node keeps for `scope` within [`ANSWER_GRACE`], if its
/// call ends by then.
async fn answer_being_kept(replays: &Replays, scope: &Scope) -> Option<(Fingerprint, Kept)> {
    let until = tokio::time::Instant::now() + ANSWER_GRACE;
    loop {
        if let Some(kept) = replays.pending_answer(scope) {
            return Some(kept);
        }
        if tokio::time::Instant::now() >= until {
            return None;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// Renews `owner`'s running mark every third of the lease for as long as
/// its call lives (as a hold's lease is renewed), so a call that runs past
/// the lease keeps its key: only a process that died lets its mark lapse.
/// The call keeps the sender; dropped, the renewing stops.
fn keep_running(
    store: &StoreHandle,
    scope: &Scope,
    owner: &str,
    replays: &Arc<Replays>,
) -> tokio::sync::oneshot::Sender<()> {
    let (running, mut ended) = tokio::sync::oneshot::channel::<()>();
    let (handle, scope, owner, replays) = (store.clone(), scope.clone(), owner.to_string(), replays.clone());
    let every = std::time::Duration::from_millis((replays.lease_ms / 3).max(1));
    store.spawn(async move {
        loop {
            tokio::select! {
                _ = &mut ended => return,
                () = tokio::time::sleep(every) => {}
            }
            let expires_at = to_i64(replays.clock.now_ms()).saturating_add(to_i64(replays.lease_ms));
            let (scope, owner) = (scope.clone(), owner.clone());
            match handle.run(move |s| async move { s.renew_key(&scope, &owner, expires_at).await }).await {
                Ok(true) => {}
                // Completed, released, or (renewed too late) taken over.
                Ok(false) => return,
                Err(e) => log::warn!(target: "tollgate", "idempotency key not renewed (it may lapse): {e}"),
            }
        }
    });
    running
}

fn retry(fingerprint: Fingerprint, kept_for: Fingerprint, kept: Kept) -> Result<Retry, GatewayError> {
    match kept {
        _ if kept_for != fingerprint => Err(GatewayError::IdempotencyKeyReused),
        Kept::Unkept => Err(GatewayError::IdempotentAnswerNotKept),
        Kept::Answer(answer) => Ok(Retry::Replay(answer)),
    }
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Idempotent {
    pub fn content_type(&mut self, content_type: &str) {
        content_type.clone_into(&mut self.content_type);
    }

    /// Keeps what is about to be written to the caller, within the answer's
    /// own bound and the node's bound on all captures.
    pub fn capture<B: AsRef<[u8]>>(&mut self, out: &[B]) {
        for chunk in out.iter().map(AsRef::as_ref) {
            if self.unkept {
                return;
            }
            let needed = self.body.len() + chunk.len();
            if needed > self.body.capacity() {
                // Counted as allocated, so the bound is on real memory.
                let grown = needed.max(self.body.capacity() * 2).min(MAX_ANSWER_BYTES);
                if needed > MAX_ANSWER_BYTES || !self.reserved.grow(grown - self.body.capacity()) {
                    self.unkept = true;
                    self.body = Vec::new();
                    self.reserved.clear();
                    return;
                }
                self.body.reserve_exact(grown - self.body.len());
            }
            self.body.extend_from_slice(chunk);
        }
    }

    /// The call ended. A completed one keeps its answer for retries (or,
    /// past the bounds, that it completed); the rest free the key, so a
    /// retry runs anew. Awaited before the connection takes its next
    /// request, so a retry on it finds the key settled; the store's work
    /// runs to its end even if this is not awaited.
    pub async fn finish(self, status: u16, completed: bool) {
        // The mark stays renewed until the store has the call's end.
        let Idempotent {
            scope,
            fingerprint,
            owner,
            replays,
            store,
            content_type,
            body,
            reserved,
            unkept,
            _renewing: renewing,
        } = self;
        if !completed || !(200..300).contains(&status) {
            drop(reserved);
            let released = store.run(move |s| async move { s.release_key(&scope, &owner).await }).await;
            drop(renewing);
            if let Err(e) = released {
                log::warn!(target: "tollgate", "idempotency key not released (it lapses with its lease): {e}");
            }
            return;
        }
        let kept = match unkept {
            true => Kept::Unkept,
            false => Kept::Answer(Arc::new(Answer { status, content_type, body })),
        };
        replays.completing(scope.clone(), fingerprint, kept.clone());
        let at = to_i64(replays.clock.now_ms());
        let expires_at = at.saturating_add(to_i64(WINDOW_MS));
        let saved = store
            .run(move |s| async move {
                let answer = match &kept {
                    Kept::Answer(answer) => Some(answer.as_ref()),
                    Kept::Unkept => None,
                };
                let saved = s.complete_key(&scope, &owner, answer, at, expires_at).await;
                replays.stored(&scope);
                drop(reserved);
                saved
            })
            .await;
        drop(renewing);
        match saved {
            Ok(true) => {}
            Ok(false) => log::warn!(target: "tollgate", "idempotency key lapsed before its call completed"),
            Err(e) => log::warn!(target: "tollgate", "idempotent answer not kept: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fingerprint_covers_method_path_and_body() {
        let base = fingerprint("POST", "/v1/chat/completions", b"{}");
        assert_eq!(base, fingerprint("POST", "/v1/chat/completions", b"{}"));
        assert_ne!(base, fingerprint("PUT", "/v1/chat/completions", b"{}"));
        assert_ne!(base, fingerprint("POST", "/v1/messages", b"{}"));
        assert_ne!(base, fingerprint("POST", "/v1/chat/completions", b"{ }"));
    }

    #[test]
    fn a_pending_answer_is_replayed_only_to_the_same_request() {
        let answer = Arc::new(Answer { status: 200, content_type: "a".into(), body: b"x".to_vec() });
        assert!(matches!(retry([1; 32], [1; 32], Kept::Answer(answer.clone())), Ok(Retry::Replay(_))));
        assert!(matches!(
            retry([2; 32], [1; 32], Kept::Answer(answer)),
            Err(GatewayError::IdempotencyKeyReused)
        ));
        assert!(matches!(retry([1; 32], [1; 32], Kept::Unkept), Err(GatewayError::IdempotentAnswerNotKept)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_waits_out_the_grace_for_an_answer_being_kept_and_no_longer() {
        let clock = Arc::new(crate::billing::ManualClock::default());
        let replays = Arc::new(Replays::new(clock, 1 << 20, 60_000));
        let scope = Scope { account: 1, key_id: 1, key: "k".into() };
        // The first call keeps its answer 20 ms after the retry looked.
        let later = (replays.clone(), scope.clone());
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            later.0.completing(later.1, [1; 32], Kept::Unkept);
        });
        let started = tokio::time::Instant::now();
        assert!(answer_being_kept(&replays, &scope).await.is_some());
        assert!(started.elapsed() < ANSWER_GRACE);
        // A call that keeps running: the retry is told so after the grace.
        let running = Scope { key: "still running".into(), ..scope };
        let started = tokio::time::Instant::now();
        assert!(answer_being_kept(&replays, &running).await.is_none());
        assert!(started.elapsed() >= ANSWER_GRACE);
    }
}
