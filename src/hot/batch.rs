//! Admits of one account that arrive while an earlier one of the same
//! account is on its way to Redis wait for it, then go together in one
//! script call (`admit.lua`'s `admit_many`): group commit. A lone call
//! goes at once, as before; under load a node sends one script call per
//! account per round trip instead of one per request, which is what a
//! Redis core spends most on (parsing, the script's set-up, the reply).
//! Each admit in a batch is still all-or-nothing on its own. One account's
//! calls share a hash slot, so a batch holds on Redis Cluster.

use super::unavailable::Unavailable;
use redis::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::oneshot;

/// Keys and arguments of one admit in `admit.lua`'s layout.
pub const ADMIT_KEYS: usize = 10;
pub const ADMIT_ARGS: usize = 15;

/// The most admits in one script call (a script blocks Redis while it
/// runs; a longer queue goes in several).
const MAX_BATCH: usize = 64;

/// One admit's script keys and arguments (admit's layout).
pub struct Call {
    pub keys: Keys,
    pub args: Vec<String>,
}

pub type Keys = [String; ADMIT_KEYS];

/// An admit's answer, and its keys given back (its permit keeps them):
/// built once, never copied for the script call.
pub type Answered = Result<(Value, Keys), Unavailable>;

struct Waiting {
    call: Call,
    reply: oneshot::Sender<Answered>,
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

/// Sends a batch (one call: `admit`; several: `admit_many`) and answers
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
                    queue.push(Waiting { call, reply });
                    Turn::Wait(answer)
                }
                None => {
                    busy.insert(account, Vec::new());
                    Turn::Now(Box::new(call))
                }
            }
        };
        match turn {
            Turn::Now(call) => {
                // Whatever happens to this call (even its caller going
                // away), the calls behind it are sent.
                let _next = HandOver { lanes: self.clone(), sender: sender.clone(), account };
                let answer = sender.send(&call.keys, &call.args).await?;
                Ok((answer, call.keys))
            }
            Turn::Wait(answer) => {
                answer.await.unwrap_or_else(|_| Err(Unavailable("the batch it waited for was lost".into())))
            }
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
                    let _ = w.reply.send(Err(Unavailable("no runtime to send the batch on".into())));
                }
                lanes.busy.lock().unwrap_or_else(PoisonError::into_inner).remove(&account);
            }
        }
    }
}

/// Sends batches of `account` until none waits.
async fn drive<S: Transport>(lanes: Arc<Lanes>, sender: S, account: u64, mut batch: Vec<Waiting>) {
    loop {
        let answers = if let [only] = batch.as_slice() {
            vec![sender.send(&only.call.keys, &only.call.args).await]
        } else {
            // The calls' keys are moved into the script call's and back.
            let mut keys = Vec::with_capacity(batch.len() * ADMIT_KEYS);
            let mut args = Vec::with_capacity(2 + batch.len() * ADMIT_ARGS);
            args.push("admit_many".to_string());
            args.push(batch.len().to_string());
            for w in &mut batch {
                keys.extend(std::mem::take(&mut w.call.keys));
                args.append(&mut w.call.args);
            }
            let answers = split(sender.send(&keys, &args).await, batch.len());
            let mut keys = keys.into_iter();
            for w in &mut batch {
                w.call.keys = std::array::from_fn(|_| keys.next().unwrap_or_default());
            }
            answers
        };
        for (w, answer) in batch.into_iter().zip(answers) {
            // A caller gone by now leaves its hold to its lease.
            let _ = w.reply.send(answer.map(|v| (v, w.call.keys)));
        }
        match lanes.next(account) {
            Some(more) => batch = more,
            None => return,
        }
    }
}

/// `admit_many`'s answer, one part per call.
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
