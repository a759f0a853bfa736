use super::*;
use crate::billing::{MemorySink, Metered};

const DAY: i64 = 86_400_000;
/// 2026-12-15T12:00:00Z
const NOW: i64 = 1_797_336_000_000;

fn charge(account: u64, model: &str, at: i64, cost: i64, input: u64) -> LedgerRecord {
    LedgerRecord {
        key: format!("r{at}{model}:charge"),
        kind: RecordKind::Charge,
        account,
        key_id: Some(1),
        wallet_nano: -cost,
        paid_nano: 0,
        unpaid_nano: 0,
        multiplier: None,
        metered: Some(Metered {
            model: model.into(),
            input_tokens: input,
            output_tokens: 2,
            cached_tokens: 1,
            cache_write_tokens: 0,
            estimated: false,
            request_id: "r".into(),
            group: None,
        }),
        at: at as u64,
    }
}

#[test]
fn charges_add_up_by_model_month_and_day() {
    let totals = UsageTotals::default();
    totals.add(&charge(1, "b", NOW, 100, 10));
    totals.add(&charge(1, "a", NOW - DAY, 50, 5));
    totals.add(&charge(1, "a", NOW - 40 * DAY, 7, 1)); // last month
    totals.add(&charge(2, "a", NOW, 1_000, 1));
    totals.add(&LedgerRecord::adjustment("adj".into(), 1, 5_000, NOW as u64));
    let v = totals.view(1, NOW);
    assert_eq!(v.total.requests, 3);
    assert_eq!(v.total.spent_nano, 157);
    assert_eq!(v.total.input_tokens, 16);
    assert_eq!(v.total.output_tokens, 6);
    assert_eq!(v.total.cached_tokens, 3);
    assert_eq!(
        v.per_model.iter().map(|(m, c)| (m.as_str(), c.requests)).collect::<Vec<_>>(),
        [("a", 2), ("b", 1)]
    );
    assert_eq!((v.month.requests, v.month.spent_nano, v.month.input_tokens), (2, 150, 15));
    assert_eq!(v.today_requests, 1);
    // A day later: yesterday's requests are not today's; the month goes on.
    let later = totals.view(1, NOW + DAY);
    assert_eq!((later.today_requests, later.month.requests), (0, 2));
    // Next month: nothing yet.
    assert_eq!(totals.view(1, NOW + 20 * DAY).month, Counts::default());
    assert_eq!(totals.view(3, NOW), AccountView::default());
}

#[test]
fn loaded_sums_and_new_charges_meet() {
    let totals = UsageTotals::default();
    let c = |requests, spent_nano| Counts { requests, spent_nano, ..Counts::default() };
    totals.load(
        &[
            LoadedSum { account: 1, model: "a".into(), period: Period::Earlier, counts: c(10, 100) },
            LoadedSum { account: 1, model: "a".into(), period: Period::ThisMonth, counts: c(5, 50) },
            LoadedSum { account: 1, model: "b".into(), period: Period::Today, counts: c(2, 20) },
        ],
        NOW,
    );
    totals.add(&charge(1, "b", NOW + 1, 3, 0));
    let v = totals.view(1, NOW);
    assert_eq!((v.total.requests, v.total.spent_nano), (18, 173));
    assert_eq!((v.month.requests, v.month.spent_nano), (8, 73));
    assert_eq!(v.today_requests, 3);
}

#[test]
fn only_the_latest_periods_are_kept_and_late_records_still_count_in_theirs() {
    let totals = UsageTotals::default();
    for d in 0..10 {
        totals.add(&charge(1, "a", NOW + d * DAY, 1, 1));
    }
    // A record of yesterday that arrives late still counts in its day.
    totals.add(&charge(1, "a", NOW + 8 * DAY, 1, 1));
    let t = totals.tally(1);
    let t = t.lock().unwrap();
    assert_eq!(t.days.len(), PERIODS_KEPT);
    assert_eq!(t.days, vec![(start_of_day(NOW + 8 * DAY), 2), (start_of_day(NOW + 9 * DAY), 1)]);
    assert!(t.months.len() <= PERIODS_KEPT);
}

#[test]
fn the_tallied_sink_counts_what_it_journals() {
    let inner = Arc::new(MemorySink::default());
    let totals = Arc::new(UsageTotals::default());
    let sink = Tallied { inner: inner.clone(), totals: totals.clone() };
    sink.record(charge(4, "m", NOW, 9, 3));
    assert_eq!(inner.take().len(), 1);
    assert_eq!(totals.view(4, NOW).total.spent_nano, 9);
}
