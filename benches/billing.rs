//! What money costs a request, measured with criterion: authenticate (the
//! key's SHA-256 and the directory lookup), admit (access rules and a hold
//! of the worst case against the wallet and the key's cap) and settle (the
//! charge, its lots, and its record written to a real journal file), the
//! three steps the request path adds when calls are billed. Issue #10's
//! bound is 10 µs for all three.
//!
//! And every rate limit of issue #11 checked and taken at once (its bound:
//! 2 µs); and the store's writer keeping a batch of many accounts' charges
//! in SQLite (a file, as the gateway's).
//!
//!   cargo bench --bench billing
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use tollgate::billing::{
    AccountState, Billing, BillingOptions, Call, Ending, KeyState, ModelPrice, NanoUsd, Plan, PriceConfig,
    Status, SystemClock,
};
use tollgate::formats::usage::Usage;
use tollgate::store::journal::Journal;

const KEY: &str = "sk-tollgate-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn setup(dir: &std::path::Path) -> (Arc<Billing>, Arc<Journal>) {
    let journal = Arc::new(Journal::open(Some(dir)).unwrap());
    let plan = Arc::new(Plan {
        name: "pro".into(),
        models: vec!["openai/*".into(), "anthropic/*".into()],
        api_access: true,
        trial_days: None,
        limits: Default::default(),
        default_model: None,
    });
    let billing = Arc::new(Billing::new(
        vec![plan.clone()],
        journal.clone(),
        Arc::new(SystemClock),
        BillingOptions::default(),
    ));
    billing.directory.put_account(AccountState {
        id: 1,
        name: "acme".into(),
        plan,
        status: Status::Active,
        trial_ends_at: None,
    });
    billing.topup(1, NanoUsd(1_000_000_000_000_000), 1, "opening").unwrap();
    billing.directory.put_key(
        tollgate::auth::digest(KEY),
        KeyState {
            id: 1,
            account: 1,
            name: "k".into(),
            prefix: "sk-tollgate-0123".into(),
            status: Status::Active,
            expires_at: None,
            spend_cap: Some(NanoUsd(i64::MAX / 2)),
            models: None,
            fallback_model: None,
            limits: Default::default(),
            created_at: 0,
            last_used_at: AtomicU64::new(0),
        },
    );
    (billing, journal)
}

fn bench(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("tollgate-bench-billing-{}", std::process::id()));
    let (billing, journal) = setup(&dir);
    let price = ModelPrice::from_config(&PriceConfig {
        input: "1.25".into(),
        output: "10".into(),
        cache_read: Some("0.125".into()),
        ..PriceConfig::default()
    })
    .unwrap();
    let usage =
        Usage { input_tokens: 1_200, output_tokens: 300, cached_input_tokens: 800, ..Usage::default() };
    let mut n: u64 = 0;
    // The catalog's name, shared as the gateway shares it.
    let model: std::sync::Arc<str> = "openai/gpt-5.5".into();
    c.bench_function("billing/authenticate+admit+settle", |b| {
        b.iter(|| {
            n += 1;
            let request_id = format!("req_{n:020}");
            let key = billing.authenticate(&tollgate::auth::digest(black_box(KEY))).unwrap();
            let call = Call {
                model_id: model.clone(),
                model_class: None,
                price,
                input_tokens: 1_200,
                max_output: 4_096,
                caller_set_limit: true,
                units: 0,
            };
            let admission = billing.admit(&key, &call, &request_id).unwrap();
            let ending = Ending { usage: Some(usage), completed: true, ..Ending::default() };
            black_box(billing.settle(admission, &ending, &request_id));
            // What the background writer does, so the journal stays small.
            if n.is_multiple_of(4096) {
                let taken = journal.take().map_or(0, |batch| batch.len() as u64);
                journal.kept(taken);
            }
        })
    });
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every limit at once (rpm, rph, daily, input tokens, concurrency):
/// admit and finish, for one key of many.
fn limits(c: &mut Criterion) {
    use tollgate::limits::{Ask, InForce, Limiter};
    let limiter = Limiter::default();
    let limits = InForce {
        rpm: Some(1_000_000),
        rpm_class: None,
        rph: Some(100_000_000),
        daily_messages: Some(1_000_000_000),
        input_tpm: Some(u64::MAX / 1_000_000),
        concurrent: Some(1_000),
        zone: Default::default(),
    };
    let mut n: u64 = 0;
    c.bench_function("limits/admit+finish, all five", |b| {
        b.iter(|| {
            n += 1;
            // A steady clock, a millisecond a call: windows age out as they would.
            let now = 1_796_119_746_000 + n;
            let ask = Ask {
                key: n % 1_000,
                account: n % 100,
                class: Some("sonnet"),
                group: "messages",
                input_estimate: 1_200,
                now,
                mono: now,
            };
            let permit = limiter.admit(black_box(&ask), &limits).unwrap();
            limiter.finish(&permit, true, Some(1_100), now);
        })
    });
}

/// The writer's batch: 180 charges of 90 accounts (two models each), so
/// 180 day totals and 90 counter postings as well, into a SQLite file
/// (which grows by each batch, as a ledger does: ~1,000 batches a run).
fn writer(c: &mut Criterion) {
    use tollgate::billing::{LedgerRecord, Metered, RecordKind};
    use tollgate::store::{SqliteStore, Store};
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let dir = std::env::temp_dir().join(format!("tollgate-bench-writer-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ledger.db");
    let store = runtime.block_on(SqliteStore::open(Some(path.to_str().unwrap()))).unwrap();
    for account in 1..=90 {
        runtime.block_on(store.create_account(&format!("a{account}"), "pro", None, 1)).unwrap();
    }
    let mut batch = 0_u64;
    c.bench_function("store/a batch of 180 charges of 90 accounts", |b| {
        let mut next_batch = || {
            batch += 1;
            (0..180_u64)
                .map(|i| LedgerRecord {
                    key: format!("req_{batch:08}_{i:03}:charge"),
                    kind: RecordKind::Charge,
                    account: 1 + i / 2,
                    key_id: Some(1 + i / 2),
                    wallet_nano: -1_000,
                    paid_nano: 0,
                    unpaid_nano: 0,
                    multiplier: None,
                    metered: Some(Metered {
                        model: if i % 2 == 0 { "m1".into() } else { "m2".into() },
                        input_tokens: 1_200,
                        output_tokens: 300,
                        request_id: format!("req_{batch:08}_{i:03}").into(),
                        ..Metered::default()
                    }),
                    at: 1_796_119_746_000 + batch,
                })
                .collect::<Vec<LedgerRecord>>()
        };
        b.iter_batched(
            &mut next_batch,
            |records| assert_eq!(runtime.block_on(store.append(&records)).unwrap(), 180),
            criterion::BatchSize::SmallInput,
        )
    });
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench, limits, writer);
criterion_main!(benches);
