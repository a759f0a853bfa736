//! The bill has no leaks (issue #16): many concurrent calls in every
//! format and direction, each ending a random way (complete, the caller
//! gone at a random byte or before the head, a slow reader past the hold's
//! lease, a provider error or cut mid-stream, an error status, unreadable
//! usage, a provider that counts more than was held, a shutdown), under
//! wallets and spend caps small enough to refuse, with `Idempotency-Key`s
//! reused with the same request, another request, and at once; then the
//! gateway is stopped with SIGTERM while streams run and started again on
//! the same store. Afterwards every call is in the ledger as what its
//! caller received says it must be: exactly at the provider's count where
//! the caller got one, within the README's estimate otherwise, never twice,
//! never for a refusal or a replay; and every wallet, hold and cap adds up.
//!
//! Seeded: the seed is printed, and `ADVERSARY_SEED=N` replays its plan
//! (`ADVERSARY_CALLS` sets the number of calls, 500 by default).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod adversary;
mod common;

use adversary::{admin, cost, read_answer, Answer, Caller, Ending, Gateway, Observed, Plan, Rng};
use common::{start_mock, Guard, TempDir};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CONCURRENCY: usize = 32;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_byte_a_caller_receives_is_billed_exactly_once() {
    let seed = adversary::seed();
    let calls = std::env::var("ADVERSARY_CALLS").ok().and_then(|n| n.parse().ok()).unwrap_or(500);
    eprintln!("billing adversary: ADVERSARY_SEED={seed} ADVERSARY_CALLS={calls}");
    let begun = Instant::now();
    let mut rng = Rng::new(seed);
    let dir = TempDir::new();
    let (db, log) = (dir.0.join("tollgate.db"), dir.0.join("gateway.log"));
    let config = adversary::config(&dir.0);
    let (mock, mock_child) = start_mock();
    let _mock = Guard(mock_child);
    let mut first = adversary::start(&config, &mock, &db, &log);
    let callers = adversary::callers(&first.admin).await;

    // 1. Every ending, at once.
    let jobs = adversary::plan_calls(&mut rng, &callers, calls);
    let mut seen = run(&first.url, jobs).await;
    eprintln!("{} calls in {:.1} s", seen.len(), begun.elapsed().as_secs_f64());
    let mut failures = settled(&first, &callers).await;

    // 2. Streams running when the gateway gets SIGTERM (grace period 1 s).
    let batch = adversary::plan_shutdown(&mut rng, &callers, calls + 10, 24);
    let (tx, mut rx) = tokio::sync::mpsc::channel(batch.len());
    let mut running = Vec::new();
    let mut streams = 0;
    for plan in batch {
        let started = matches!(plan.ending, Ending::Shutdown { .. }).then(|| tx.clone());
        streams += usize::from(started.is_some());
        let url = first.url.clone();
        running.push(tokio::spawn(async move { adversary::drive(&url, plan, started).await }));
    }
    drop(tx);
    let deadline = Instant::now() + Duration::from_secs(20);
    for _ in 0..streams {
        // Each stream has its first bytes, or has ended without any.
        match tokio::time::timeout_at(deadline.into(), rx.recv()).await {
            Ok(Some(())) => {}
            Ok(None) => break,
            Err(_) => panic!("seed {seed}: the shutdown's streams did not start"),
        }
    }
    if let Ok(Some(exit)) = first.child.0.try_wait() {
        failures.push(format!("the gateway had ended ({exit}) before its SIGTERM"));
    }
    let took = adversary::terminate(&mut first).await;
    for r in running {
        seen.push(r.await.unwrap());
    }
    eprintln!("SIGTERM: the gateway stopped in {:.1} s", took.as_secs_f64());

    // 3. Started again on the same store: retries of completed keys replay,
    //    keys whose calls the shutdown cut run anew (or are still held).
    let second = adversary::start(&config, &mock, &db, &log);
    let mut again = Vec::new();
    let mut n = calls + 100;
    for o in seen.iter().filter(|o| o.plan.idem.is_some() && !o.replayed && o.status == Some(200)) {
        let cut = matches!(o.plan.ending, Ending::Shutdown { .. });
        let answer = read_answer(o.plan.format, o.plan.stream, &o.body, o.clean_end);
        if cut || (answer.complete && again.len() < 12) {
            let mut plan = o.plan.again(n, Ending::Complete);
            (plan.chunks, plan.delay_ms) = (5, 0);
            again.push(vec![plan]);
            n += 1;
        }
    }
    seen.extend(run(&second.url, again).await);
    failures.extend(settled(&second, &callers).await);
    let received = upstream(&mock).await;
    failures.extend(check(&second, &callers, &seen, &received, begun).await);
    let panics = std::fs::read_to_string(&log).unwrap_or_default();
    failures.extend(panics.lines().filter(|l| l.contains("panicked")).map(|l| format!("the gateway: {l}")));
    eprintln!("seed {seed}: {} calls checked in {:.1} s", seen.len(), begun.elapsed().as_secs_f64());
    if !failures.is_empty() {
        // The gateway's log lines about the calls that failed; all of it kept.
        let kept = std::env::temp_dir().join(format!("bill-adversary-{seed}.log"));
        let _ = std::fs::copy(&log, &kept);
        let log = std::fs::read_to_string(&log).unwrap_or_default();
        let about: Vec<&str> = log
            .lines()
            .filter(|l| {
                let id = l.split_whitespace().find(|w| w.starts_with("req_"));
                id.is_some_and(|id| failures.iter().take(20).any(|f| f.contains(id)))
            })
            .collect();
        panic!(
            "ADVERSARY_SEED={seed}: {} failure(s):\n{}\ngateway log ({}) about them:\n{}",
            failures.len(),
            failures.iter().take(60).cloned().collect::<Vec<_>>().join("\n"),
            kept.display(),
            about.join("\n")
        );
    }
}

/// Runs the jobs, `CONCURRENCY` at a time; a job's calls run at once.
async fn run(url: &str, jobs: Vec<Vec<Plan>>) -> Vec<Observed> {
    let limit = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
    let mut tasks = Vec::new();
    for job in jobs {
        let (url, limit) = (url.to_string(), limit.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = limit.acquire_owned().await.unwrap();
            let calls = job.into_iter().map(|plan| adversary::drive(&url, plan, None));
            let all = futures_util::future::join_all(calls);
            tokio::time::timeout(Duration::from_secs(60), all).await.expect("a call hung")
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.extend(t.await.unwrap());
    }
    out
}

/// Waits (bounded) until no account holds anything and every balance is
/// what its ledger in the store adds up to; what is wrong after that.
async fn settled(gateway: &Gateway, callers: &[Caller]) -> Vec<String> {
    let accounts: HashSet<i64> = callers.iter().map(|c| c.account).collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut wrong = Vec::new();
        for &account in &accounts {
            let (_, view) =
                admin(&gateway.admin, "GET", &format!("/admin/v1/accounts/{account}"), None).await;
            let ledger = ledger(gateway, account).await;
            let sum: i64 = ledger.iter().map(|e| e["amount_nano_usd"].as_i64().unwrap()).sum();
            let (balance, held) =
                (view["balance_nano_usd"].as_i64().unwrap(), view["held_nano_usd"].as_i64().unwrap());
            if held != 0 || balance != sum || balance < 0 {
                wrong.push(format!("account {account}: balance {balance}, held {held}, ledger sum {sum}"));
            }
        }
        if wrong.is_empty() {
            return wrong;
        }
        if Instant::now() > deadline {
            return wrong.into_iter().map(|w| format!("not settled after 20 s: {w}")).collect();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn ledger(gateway: &Gateway, account: i64) -> Vec<Value> {
    let (s, ledger) =
        admin(&gateway.admin, "GET", &format!("/admin/v1/ledger?account={account}"), None).await;
    assert_eq!(s, 200, "{ledger}");
    ledger["entries"].as_array().unwrap().clone()
}

/// What the mock received, by tag: the upstream bodies' lengths.
async fn upstream(mock: &str) -> HashMap<String, Vec<u64>> {
    let all: Vec<Value> = reqwest::get(format!("{mock}/_mock/requests")).await.unwrap().json().await.unwrap();
    let mut by_tag: HashMap<String, Vec<u64>> = HashMap::new();
    for r in all {
        if let Some(tag) = r["tag"].as_str() {
            by_tag.entry(tag.to_string()).or_default().push(r["body_len"].as_u64().unwrap());
        }
    }
    by_tag
}

/// What a call's charge must be, from what its caller received.
#[derive(Debug)]
enum Expect {
    /// Refused, an error before the first byte, a replay, a 409 or 422.
    Unbilled,
    /// Completed with the provider's usage: exactly that, not estimated.
    Exact(i64, i64),
    /// Anything else: charged (when the caller got answer bytes) within
    /// the estimate's bounds, flagged estimated where the README says so.
    Estimate { required: bool, flagged: bool },
    /// The caller never got a response head: no request id to look for.
    Unseen,
}

fn expect(o: &Observed, a: &Answer) -> Expect {
    let Some(status) = o.status else { return Expect::Unseen };
    if !(200..300).contains(&status) || o.replayed {
        return Expect::Unbilled;
    }
    let unmetered = matches!(o.plan.ending, Ending::Unmetered(_));
    if a.complete && !unmetered {
        if let Some((input, output)) = a.usage {
            return Expect::Exact(input, output);
        }
    }
    // The provider's partial count covers no more than one relayed event
    // (Anthropic's message_start); Gemini counts in every chunk.
    let provider_side =
        matches!(o.plan.ending, Ending::Cut(_) | Ending::ErrorAfter(_) | Ending::Shutdown { .. });
    let flagged = (unmetered && a.complete)
        || (provider_side && !o.left && a.deltas >= 2 && o.plan.provider() != "gemini");
    Expect::Estimate { required: a.answered, flagged }
}

async fn check(
    gateway: &Gateway,
    callers: &[Caller],
    seen: &[Observed],
    upstream: &HashMap<String, Vec<u64>>,
    begun: Instant,
) -> Vec<String> {
    let mut failures = Vec::new();
    let mut fail = |s: String| failures.push(s);
    // The ledger of every account: charges by request id, never twice.
    let accounts: HashSet<i64> = callers.iter().map(|c| c.account).collect();
    let mut charges: HashMap<String, (i64, Value)> = HashMap::new();
    let mut per_account: BTreeMap<i64, Vec<Value>> = BTreeMap::new();
    for &account in &accounts {
        let entries = ledger(gateway, account).await;
        for e in entries.iter().filter(|e| e["kind"] == "charge") {
            let id = e["request_id"].as_str().unwrap_or("").to_string();
            if let Some((_, before)) = charges.insert(id.clone(), (account, e.clone())) {
                fail(format!("{id} is in the ledger twice: {before} and {e}"));
            }
        }
        per_account.insert(account, entries);
    }
    let mut by_id: HashMap<&str, &Observed> = HashMap::new();
    for o in seen {
        if let Some(id) = &o.request_id {
            if by_id.insert(id, o).is_some() {
                fail(format!("two responses carry the request id {id}"));
            }
        }
    }
    for (id, (account, e)) in &charges {
        if !by_id.contains_key(id.as_str()) {
            fail(format!("account {account} charged for {id}, which no caller got a response for: {e}"));
        }
    }

    let mut tally: BTreeMap<String, usize> = BTreeMap::new();
    let (mut exact_sum, mut low, mut high, mut ledger_sum) = (0i64, 0i64, 0i64, 0i64);
    let mut runs: HashMap<(i64, String, Vec<u8>), Vec<&Observed>> = HashMap::new();
    for o in seen {
        let p = &o.plan;
        let a = read_answer(p.format, p.stream, &o.body, o.clean_end);
        let rule = expect(o, &a);
        let what = format!(
            "#{} {}→{} stream={} {:?} key={} idem={:?} status={:?} replayed={} bytes={} {:?}",
            p.n,
            p.format,
            p.model,
            p.stream,
            p.ending,
            p.caller.key_id,
            p.idem,
            o.status,
            o.replayed,
            o.body.len(),
            o.request_id
        );
        let name = format!("{:?}", p.ending);
        let name = name.split(['(', ' ']).next().unwrap().to_string();
        let status = o.status.map_or("-".into(), |s| s.to_string());
        *tally.entry(format!("{name:<18} {status} {}", rule_name(&rule))).or_default() += 1;
        let sent_up = upstream.get(&p.tag).map_or(0, Vec::len);
        let charge = o.request_id.as_ref().and_then(|id| charges.get(id)).map(|(acc, e)| (*acc, e));
        if let Some((account, e)) = charge {
            ledger_sum += -e["amount_nano_usd"].as_i64().unwrap() + e["unpaid_nano_usd"].as_i64().unwrap();
            let (_, _, model) = adversary::price(p.model);
            let (input, output) = (e["input_tokens"].as_i64().unwrap(), e["output_tokens"].as_i64().unwrap());
            let (amount, unpaid) =
                (e["amount_nano_usd"].as_i64().unwrap(), e["unpaid_nano_usd"].as_i64().unwrap());
            if account != p.caller.account || e["key_id"] != p.caller.key_id || e["model"] != model {
                fail(format!("{what}: charged to account {account}, {e}"));
            }
            if amount > 0 || unpaid < 0 || -amount + unpaid != cost(p.model, input, output) {
                fail(format!(
                    "{what}: {e} is not its tokens at list price ({})",
                    cost(p.model, input, output)
                ));
            }
        }
        if o.status.is_some_and(|s| (200..300).contains(&s)) && !o.replayed && sent_up != 1 {
            fail(format!("{what}: went upstream {sent_up} times"));
        }
        match rule {
            Expect::Unseen => {
                if !matches!(p.ending, Ending::LeftBeforeHead | Ending::ShutdownBeforeHead) {
                    fail(format!("{what}: no response: {:?}", o.error));
                }
            }
            Expect::Unbilled => {
                if let Some((_, e)) = charge {
                    fail(format!("{what}: billed though refused or replayed: {e}"));
                }
                let refused = o.replayed || matches!(o.status, Some(401..=403 | 409 | 422));
                if refused && sent_up != 0 {
                    fail(format!("{what}: refused or replayed, yet sent upstream {sent_up} times"));
                }
            }
            Expect::Exact(input, output) => {
                let c = cost(p.model, input, output);
                exact_sum += c;
                match charge {
                    None => fail(format!("{what}: completed with usage ({input}, {output}) but not billed")),
                    Some((_, e)) => {
                        let got = (e["input_tokens"].as_i64(), e["output_tokens"].as_i64(), &e["estimated"]);
                        if got != (Some(input), Some(output), &Value::Bool(false)) {
                            fail(format!("{what}: the caller's usage was ({input}, {output}), billed {e}"));
                        }
                    }
                }
            }
            Expect::Estimate { required, flagged } => {
                let deltas = p.chunks;
                let max_out = if p.stream { deltas + 12 } else { 5 * deltas + 80 } as i64;
                // The hold's input estimate: a token per four bytes of the body as
                // planned, and 16 more for the limit the budget affords when the
                // gateway writes one into it (see `Billing::admit`).
                let max_in = upstream
                    .get(&p.tag)
                    .and_then(|l| l.iter().max())
                    .map_or(0, |l| (l + 24).div_ceil(4) + 16) as i64;
                if required {
                    low += cost(p.model, 1, 1);
                }
                high += cost(p.model, max_in, max_out);
                match charge {
                    None if required => fail(format!("{what}: received {} bytes, not billed", o.body.len())),
                    None => {}
                    Some((_, e)) => {
                        let (input, output) =
                            (e["input_tokens"].as_i64().unwrap(), e["output_tokens"].as_i64().unwrap());
                        // Every text delta the caller got is paid for; an estimate is
                        // at least one token (a provider's count of a stream it cut
                        // before any text may be of its input alone).
                        let min_out = (a.deltas as i64).max(i64::from(e["estimated"] == true));
                        if !(min_out..=max_out).contains(&output) || !(1..=max_in).contains(&input) {
                            fail(format!(
                                "{what}: {e} is past the bounds (in ≤ {max_in}, out in {min_out}..={max_out})"
                            ));
                        }
                        if flagged && e["estimated"] != true {
                            fail(format!(
                                "{what}: {e} should be flagged estimated ({} deltas received)",
                                a.deltas
                            ));
                        }
                    }
                }
            }
        }
        if let Some(idem) = &p.idem {
            runs.entry((p.caller.key_id, idem.clone(), p.body.clone())).or_default().push(o);
        }
    }
    // Replays repeat a completed run's bytes; a key runs once, and after it
    // completed, never again.
    for ((key, idem, _), calls) in &runs {
        let ran: Vec<&&Observed> = calls
            .iter()
            .filter(|o| !o.replayed && o.status.is_some_and(|s| (200..300).contains(&s)))
            .collect();
        let whole: Vec<&&&Observed> = ran
            .iter()
            .filter(|o| read_answer(o.plan.format, o.plan.stream, &o.body, o.clean_end).complete)
            .collect();
        let all = || calls.iter().map(|o| summary(o, begun)).collect::<Vec<_>>().join("; ");
        if whole.len() > 1 {
            fail(format!("key {key} {idem}: completed {} times: {}", whole.len(), all()));
        }
        for c in &whole {
            for later in ran.iter().filter(|o| o.sent_at > c.done_at + Duration::from_millis(500)) {
                fail(format!(
                    "key {key} {idem}: #{} ran after #{} completed: {}",
                    later.plan.n,
                    c.plan.n,
                    all()
                ));
            }
        }
        // Which run's answer was kept is known when every run was read whole.
        for r in calls.iter().filter(|o| o.replayed && o.clean_end) {
            if ran.len() == whole.len() && !whole.iter().any(|c| c.body == r.body) {
                fail(format!(
                    "key {key} {idem}: replay #{} is not the answer its run got: {}",
                    r.plan.n,
                    all()
                ));
            }
        }
    }

    // Wallets, holds and caps.
    let (mut billed, mut unpaid) = (0i64, 0i64);
    for (account, entries) in &per_account {
        let (_, view) = admin(&gateway.admin, "GET", &format!("/admin/v1/accounts/{account}"), None).await;
        let sum: i64 = entries.iter().map(|e| e["amount_nano_usd"].as_i64().unwrap()).sum();
        let balance = view["balance_nano_usd"].as_i64().unwrap();
        if balance != sum || balance < 0 || view["held_nano_usd"] != 0 {
            fail(format!("account {account}: {view} against a ledger summing to {sum}"));
        }
        for e in entries.iter().filter(|e| e["kind"] == "charge") {
            billed += -e["amount_nano_usd"].as_i64().unwrap() + e["unpaid_nano_usd"].as_i64().unwrap();
            unpaid += e["unpaid_nano_usd"].as_i64().unwrap();
        }
    }
    for c in callers {
        let (_, key) = admin(&gateway.admin, "GET", &format!("/admin/v1/keys/{}", c.key_id), None).await;
        let spend = key["spend_nano_usd"].as_i64().unwrap();
        let charged: i64 = charges
            .values()
            .filter(|(_, e)| e["key_id"] == c.key_id)
            .map(|(_, e)| -e["amount_nano_usd"].as_i64().unwrap())
            .sum();
        if spend != charged || c.cap_nano.is_some_and(|cap| spend > cap) {
            fail(format!("key {}: spend {spend}, charged {charged}, cap {:?}", c.key_id, c.cap_nano));
        }
        eprintln!("  key {} (account {}): spent {spend} of cap {:?}", c.key_id, c.account, c.cap_nano);
    }
    // Σ ledger = Σ over calls: exact where counted, within the estimates otherwise.
    if billed != ledger_sum || ledger_sum < exact_sum + low || ledger_sum > exact_sum + high {
        fail(format!(
            "Σ ledger {billed} (of known calls {ledger_sum}): exact {exact_sum} + estimates in [{low}, {high}]"
        ));
    }
    for (row, count) in &tally {
        eprintln!("  {row} {count}");
    }
    eprintln!(
        "Σ charged {billed} nano-USD: exact {exact_sum}, estimated {} (bounds {low}..{high}); \
         of which {unpaid} unpaid (past the hold, wallet and cap)",
        billed - exact_sum
    );
    failures
}

/// A call under an `Idempotency-Key`, in a word: when, how, what it got.
fn summary(o: &Observed, begun: Instant) -> String {
    let whole = read_answer(o.plan.format, o.plan.stream, &o.body, o.clean_end).complete;
    format!(
        "#{} {:?} sent {:.2} s, done {:.2} s: {:?}{}{} {:?}",
        o.plan.n,
        o.plan.ending,
        (o.sent_at - begun).as_secs_f64(),
        (o.done_at - begun).as_secs_f64(),
        o.status,
        if o.replayed { " replayed" } else { "" },
        if whole { " whole" } else { "" },
        o.request_id,
    )
}

fn rule_name(rule: &Expect) -> &'static str {
    match rule {
        Expect::Unbilled => "unbilled",
        Expect::Exact(..) => "exact",
        Expect::Estimate { required: true, .. } => "estimate",
        Expect::Estimate { required: false, .. } => "estimate-or-nothing",
        Expect::Unseen => "no response",
    }
}
