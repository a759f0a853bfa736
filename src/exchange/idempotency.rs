//! `Idempotency-Key` on a billed model call: the first call with a key
//! runs and its answer is captured as the caller receives it; a retry
//! while it runs is a 409; a retry after it completed gets the captured
//! answer, unbilled. See [`crate::billing::replay`] for the rules.

use crate::auth::Principal;
use crate::billing::replay::{Answer, Begun, Replays, MAX_ANSWER_BYTES};
use crate::error::GatewayError;
use crate::gateway::Gateway;
use crate::store::StoreHandle;
use std::sync::Arc;

pub const HEADER: &str = "idempotency-key";

/// What a call with a key does.
pub enum Retry {
    /// Run it, capturing its answer.
    Run(Box<Idempotent>),
    /// Answer with what the first call got.
    Replay(Arc<Answer>),
}

/// A call running under a key, and what its caller has been sent so far.
pub struct Idempotent {
    account: u64,
    key: String,
    replays: Arc<Replays>,
    store: StoreHandle,
    content_type: String,
    body: Vec<u8>,
    too_large: bool,
}

/// Looks `key` up for `principal`'s account (`None`: no key, or nothing is
/// billed here).
pub async fn begin(
    gateway: &Gateway,
    principal: &Principal,
    key: Option<String>,
) -> Result<Option<Retry>, GatewayError> {
    let (Some(key), Some(money), Some(billed)) = (key, &gateway.money, &principal.billed) else {
        return Ok(None);
    };
    let key = key.trim().to_string();
    if key.is_empty() || key.len() > 255 {
        return Err(GatewayError::BadRequest("'Idempotency-Key' must be 1 to 255 characters".into()));
    }
    let account = billed.account;
    let lookup = key.clone();
    let kept = money
        .store
        .run(move |s| async move { s.answer(account as i64, &lookup).await })
        .await
        .map_err(|e| GatewayError::Internal(e.to_string()))?
        .map(|(at, answer)| (at as u64, answer));
    Ok(Some(match money.replays.begin(account, &key, kept) {
        Begun::Fresh => Retry::Run(Box::new(Idempotent {
            account,
            key,
            replays: money.replays.clone(),
            store: money.store.clone(),
            content_type: String::new(),
            body: Vec::new(),
            too_large: false,
        })),
        Begun::Running => return Err(GatewayError::IdempotencyConflict),
        Begun::Done(answer) => Retry::Replay(answer),
    }))
}

impl Idempotent {
    pub fn content_type(&mut self, content_type: &str) {
        content_type.clone_into(&mut self.content_type);
    }

    /// Keeps what is about to be written to the caller.
    pub fn capture<B: AsRef<[u8]>>(&mut self, out: &[B]) {
        if self.too_large {
            return;
        }
        for chunk in out.iter().map(AsRef::as_ref) {
            if self.body.len() + chunk.len() > MAX_ANSWER_BYTES {
                self.too_large = true;
                self.body = Vec::new();
                return;
            }
            self.body.extend_from_slice(chunk);
        }
    }

    /// The call ended: `completed` answers are kept for retries; the rest
    /// are forgotten, so a retry runs anew.
    pub fn finish(self, status: u16, completed: bool) {
        let Idempotent { account, key, replays, store, content_type, body, too_large } = self;
        if !completed || too_large || !(200..300).contains(&status) {
            replays.abandon(account, &key);
            return;
        }
        let answer = replays.complete(account, &key, Answer { status, content_type, body });
        let at = crate::billing::SystemClock.now_ms() as i64;
        let runner = store.clone();
        runner.spawn(async move {
            let saved = store_answer(&store, account, &key, answer, at).await;
            match saved {
                Ok(()) => replays.kept(account, &key),
                Err(e) => log::warn!(target: "tollgate", "idempotent answer not kept: {e}"),
            }
        });
    }
}

async fn store_answer(
    store: &StoreHandle,
    account: u64,
    key: &str,
    answer: Arc<Answer>,
    at: i64,
) -> Result<(), crate::store::StoreError> {
    let key = key.to_string();
    store.run(move |s| async move { s.save_answer(account as i64, &key, &answer, at).await }).await
}

use crate::billing::Clock as _;
