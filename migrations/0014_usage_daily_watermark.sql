-- The day totals without a trigger: the writer folds into usage_daily
-- every wallet charge past a watermark that no writer folded as it wrote
-- it (totals_kept = 0), in the transaction that writes its batch, and
-- moves the watermark (src/store/sqlite/append.rs). The per-row trigger
-- ran for every posting, wallet and counter, even only to test its WHEN:
-- about a tenth of the writer's work per record. A process of an older
-- release sharing the file while an upgrade hands over is still counted
-- once: one of migration 0013's writers folds its own batches and marks
-- them totals_kept = 1, which this fold skips; an older one's postings
-- (totals_kept = 0) are folded at the next batch.
CREATE TABLE usage_daily_folded (
    only  INTEGER PRIMARY KEY CHECK (only = 1),
    upto  INTEGER NOT NULL
);
-- Everything written so far is counted (by its writer or by the trigger).
INSERT INTO usage_daily_folded VALUES (1, (SELECT COALESCE(MAX(id), 0) FROM ledger_postings));
DROP TRIGGER usage_daily_charge;
