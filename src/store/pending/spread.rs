//! Which of a batch's records go pending: those spread thin over time. The write path
//! folds a batch's records into one rollup row a 15-minute slot and key, so records in
//! time order cost it little more than the rows; records spread thin (history in random
//! order, a replay, a broker's redelivery after a long outage) cost it a rollup row, and
//! an index probe, each. Stored pending, they cost an append, and their block's rebuild
//! later reads them in time order.

use std::collections::HashMap;

use crate::store::schema::row::Row;
use crate::store::schema::slots::QUARTER_US;

/// A 15-minute slot holding fewer of a batch's rows than this leaves them thin. A live
/// service's batch falls in one or two slots, and a batch of history in time order in a
/// few, each holding many; history in random order, even in an import's batches of
/// 20,000 over 90 days, holds two or three a slot.
const CROWD: usize = 16;

/// Thin rows a batch needs before they go pending: a few stragglers cost less in the
/// write path than a rebuild of their block.
const THIN_MIN: usize = 64;

/// Splits `rows` into the thin ones to store pending (none unless there are
/// [`THIN_MIN`]) and the others. A row before `raw_before_us`, the retention horizon,
/// is never thin: before it, a block's rollups hold the sums of records that are gone,
/// and cannot be rebuilt.
pub(crate) fn spread_thin(rows: Vec<Row>, raw_before_us: i64) -> (Vec<Row>, Vec<Row>) {
    let quarter = |row: &Row| row.started_at_us.div_euclid(QUARTER_US);
    let mut crowds: HashMap<i64, usize> = HashMap::new();
    for row in &rows {
        *crowds.entry(quarter(row)).or_default() += 1;
    }
    let is_thin = |row: &Row| crowds[&quarter(row)] < CROWD && row.started_at_us >= raw_before_us;
    if rows.iter().filter(|row| is_thin(row)).count() < THIN_MIN {
        return (Vec::new(), rows);
    }
    rows.into_iter().partition(is_thin)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(starts: impl IntoIterator<Item = i64>) -> Vec<Row> {
        let record = crate::UsageRecord::builder().build();
        starts
            .into_iter()
            .map(|at| {
                let mut row = Row::from(&record);
                row.started_at_us = at;
                row
            })
            .collect()
    }

    #[test]
    fn crowded_rows_stay_on_the_write_path() {
        // 1,000 records a second apart: two 15-minute slots, none thin.
        let (thin, others) = spread_thin(rows((0..1_000).map(|i| i * 1_000_000)), i64::MIN);
        assert!(thin.is_empty());
        assert_eq!(others.len(), 1_000);
    }

    #[test]
    fn rows_spread_over_days_go_pending_but_a_crowded_slot_and_the_early_ones() {
        let mut starts: Vec<i64> = (0..100).map(|i| i * 3_600_000_000).collect();
        starts.extend([5 * QUARTER_US + 1; 20]);
        let horizon = 2 * 3_600_000_000;
        let (thin, others) = spread_thin(rows(starts), horizon);
        // Hours 0 and 1 are before the horizon; the crowded slot's twenty stay too.
        assert_eq!(thin.len(), 98);
        assert_eq!(others.len(), 22);
        assert!(thin.iter().all(|r| r.started_at_us >= horizon));
    }

    #[test]
    fn a_few_stragglers_stay_on_the_write_path() {
        let (thin, others) = spread_thin(rows((0..63).map(|i| i * QUARTER_US)), i64::MIN);
        assert!(thin.is_empty());
        assert_eq!(others.len(), 63);
    }
}
