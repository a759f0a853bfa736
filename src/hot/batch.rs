//! Calls of one account (admits, and the settlements of calls that
//! ended) that arrive while an earlier one of the same account is on its
//! way to Redis wait for it, then go together in one function call
//! (`admit.lua`'s `many`): group commit. A lone call goes at once; under
//! load a node sends one call per account per round trip instead of two
//! per request, which is what a Redis core and the node spend most on
//! (the round trip's system calls and wake-ups, the call's parsing and
//! reply). Each call in a batch is still all-or-nothing on its own, in
//! order. A settlement waits for nothing: it rides with the account's
//! next batch, or goes on a task of its own on the caller's runtime (no
//! hop to another thread). One account's calls share a hash slot, so a
//! batch holds on Redis Cluster.

use super::keys::{with_wallet, WALLET_KEYS};
use super::unavailable::Unavailable;
use redis::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::oneshot;

/// The most arguments of one call (admit or settlement) in `admit.lua`'s
/// layout.
pub const ADMIT_ARGS: usize = 15;

/// The most calls in one call to Redis (a function blocks Redis while it
/// runs; a longer queue goes in several).
const MAX_BATCH: usize = 64;

/// One call's own keys (its limits'; the account's wallet keys go once
/// in front of a batch's) and arguments (its op first).
pub struct Call {
    pub keys: Vec<String>,
    pub args: Vec<String>,
}

/// An admit's answer, and its keys given back (its permit keeps them):
/// built once, never copied for the call to Redis.
pub type Answered = Result<(Value, Vec<String>), Unavailable>;

enum Waiting {
    Admit {
        call: Call,
        reply: oneshot::Sender<Answered>,
    },
    /// A settlement: nobody waits for its answer.
    Settle(Call),
}

impl Waiting {
    fn call_mut(&mut self) -> &mut Call {
        match self {
            Waiting::Admit { call, .. } | Waiting::Settle(call) => call,
        }
    }

    /// Hands `answer` to whoever waits for it.
    fn answer(self, answer: Result<Value, Unavailable>) {
        match self {
            // A caller gone by now leaves its hold to its lease.
            Waiting::Admit { call, reply } => {
                let _ = reply.send(answer.map(|v| (v, call.keys)));
            }
            Waiting::Settle(_) => match answer {
                Ok(Value::ServerError(e)) => lost_settlement(&format!("{e:?}")),
                Ok(_) => {}
                Err(e) => lost_settlement(&e.0),
            },
        }
    }
}

fn lost_settlement(why: &str) {
    log::warn!(target: "tollgate", "hot state: a settlement was lost ({why}); the lease frees its slot and hold, the reconciler its charge");
}

enum Turn {
    Now(Box<Call>),
    Wait(oneshot::Receiver<Answered>),
}

/// Per account with a call on its way: the calls that came since.
#[derive(Default)]
pub struct Lanes {
    busy: Mutex<HashMap<u64, Vec<Waiting>>>,
}

/// Sends a batch (one call: its own op; several: `many`) and answers
/// each call's own part, in order.
pub trait Transport: Clone + Send + Sync + 'static {
    fn send(
        &self,
        keys: &[String],
        args: &[String],
    ) -> impl std::future::Future<Output = Result<Value, Unavailable>> + Send;
}

impl Lanes {
    /// `call`'s answer from Redis: sent now when no other call of
    /// `account` is on its way, else with the calls that wait behind it.
    pub async fn admit<S: Transport>(self: &Arc<Self>, sender: &S, account: u64, call: Call) -> Answered {
        let turn = {
            let mut busy = self.busy.lock().unwrap_or_else(PoisonError::into_inner);
            match busy.get_mut(&account) {
                Some(queue) => {
                    let (reply, answer) = oneshot::channel();
                    queue.push(Waiting::Admit { call, reply });
                    Turn::Wait(answer)
                }
                None => {
                    busy.insert(account, Vec::new());
                    Turn::Now(Box::new(call))
                }
            }
        };
        match turn {
            Turn::Now(mut call) => {
                // Whatever happens to this call (even its caller going
                // away), the calls behind it are sent.
                let _next = HandOver { lanes: self.clone(), sender: sender.clone(), account };
                let mut keys = with_wallet(account, std::mem::take(&mut call.keys));
                let answer = sender.send(&keys, &call.args).await?;
                Ok((answer, keys.split_off(WALLET_KEYS)))
            }
            Turn::Wait(answer) => {
                answer.await.unwrap_or_else(|_| Err(Unavailable("the batch it waited for was lost".into())))
            }
        }
    }

    /// Settles `call` (a finish or a cancel of `account`): sent now, on a
    /// task of the current runtime, when no call of `account` is on its
    /// way, else with the calls that wait behind it. Without a runtime
    /// it is lost (the lease and the reconciler make up for it).
    pub fn settle<S: Transport>(self: &Arc<Self>, sender: &S, account: u64, call: Call) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return lost_settlement("no runtime to send it on");
        };
        let first = {
            let mut busy = self.busy.lock().unwrap_or_else(PoisonError::into_inner);
            match busy.get_mut(&account) {
                Some(queue) => {
                    queue.push(Waiting::Settle(call));
                    None
                }
                None => {
                    busy.insert(account, Vec::new());
                    Some(call)
                }
            }
        };
        if let Some(call) = first {
            runtime.spawn(drive(self.clone(), sender.clone(), account, vec![Waiting::Settle(call)]));
        }
    }

    /// The next batch of `account`, or none (the lane is then free).
    fn next(&self, account: u64) -> Option<Vec<Waiting>> {
        let mut busy = self.busy.lock().unwrap_or_else(PoisonError::into_inner);
        match busy.get_mut(&account) {
            Some(queue) if !queue.is_empty() => {
                let rest = queue.split_off(queue.len().min(MAX_BATCH));
                Some(std::mem::replace(queue, rest))
            }
            _ => {
                busy.remove(&account);
                None
            }
        }
    }
}

/// Sends what waits behind a call once the call is answered (or dropped).
struct HandOver<S: Transport> {
    lanes: Arc<Lanes>,
    sender: S,
    account: u64,
}

impl<S: Transport> Drop for HandOver<S> {
    fn drop(&mut self) {
        let Some(batch) = self.lanes.next(self.account) else { return };
        let (lanes, sender, account) = (self.lanes.clone(), self.sender.clone(), self.account);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(drive(lanes, sender, account, batch));
            }
            Err(_) => {
                for w in batch {
                    w.answer(Err(Unavailable("no runtime to send the batch on".into())));
                }
                lanes.busy.lock().unwrap_or_else(PoisonError::into_inner).remove(&account);
            }
        }
    }
}

/// Sends batches of `account` until none waits.
async fn drive<S: Transport>(lanes: Arc<Lanes>, sender: S, account: u64, mut batch: Vec<Waiting>) {
    loop {
        let answers = send_batch(&sender, account, &mut batch).await;
        for (w, answer) in batch.into_iter().zip(answers) {
            w.answer(answer);
        }
        match lanes.next(account) {
            Some(more) => batch = more,
            None => return,
        }
    }
}

/// One call to Redis for `batch` (its own op when alone, else `many`):
/// the account's wallet keys, then each call's own, moved in and back.
async fn send_batch<S: Transport>(
    sender: &S,
    account: u64,
    batch: &mut [Waiting],
) -> Vec<Result<Value, Unavailable>> {
    let mut keys = with_wallet(account, []);
    let lone = batch.len() == 1;
    let mut args = Vec::with_capacity(2 + batch.len() * ADMIT_ARGS);
    if !lone {
        args.push("many".to_string());
        args.push(batch.len().to_string());
    }
    let mut own = Vec::with_capacity(batch.len());
    for w in batch.iter_mut() {
        let call = w.call_mut();
        own.push(call.keys.len());
        keys.append(&mut call.keys);
        args.append(&mut call.args);
    }
    let answer = sender.send(&keys, &args).await;
    let mut keys = keys.into_iter().skip(WALLET_KEYS);
    for (w, n) in batch.iter_mut().zip(own) {
        w.call_mut().keys = keys.by_ref().take(n).collect();
    }
    if lone {
        vec![answer]
    } else {
        split(answer, batch.len())
    }
}

/// `many`'s answer, one part per call.
fn split(answer: Result<Value, Unavailable>, calls: usize) -> Vec<Result<Value, Unavailable>> {
    match answer {
        Ok(Value::Array(parts)) if parts.len() == calls => parts.into_iter().map(Ok).collect(),
        Ok(other) => {
            let e = Unavailable(format!("unexpected batch answer {other:?}"));
            vec![Err(e); calls]
        }
        Err(e) => vec![Err(e); calls],
    }
}
