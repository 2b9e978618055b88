//! What a retention run keeps: the policy, checked when it is made.

use crate::store::schema::slots::{DAY_US, WEEK_US};

/// How long the store keeps records and rollups; applied by
/// [`DieselStore::apply_retention`](crate::store::DieselStore::apply_retention).
///
/// Records are removed by whole 7-day blocks of the per-user sums (blocks count from the
/// Unix epoch, so they start on Thursdays at 00:00 UTC): a block goes once all of it is
/// older than the records' horizon, so between `days` and `days + 7` days of records
/// stay. The rollups keep their sums until their own horizon, forever by default.
///
/// ```
/// use tower_usage::store::RetentionPolicy;
///
/// let policy = RetentionPolicy::keep_records_days(30)?.keep_rollups_days(400)?;
/// assert_eq!(policy.records_days(), 30);
/// assert_eq!(policy.rollups_days(), Some(400));
/// assert!(RetentionPolicy::keep_records_days(1).is_err());
/// # Ok::<(), tower_usage::store::BadRetentionPolicy>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    records_days: u32,
    rollups_days: Option<u32>,
    batch_rows: u32,
}

/// A retention policy that cannot be applied, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BadRetentionPolicy {
    /// Records must be kept at least [`RetentionPolicy::MIN_RECORDS_DAYS`] days: the block
    /// a batch seals gets its heavy users' detail from its records.
    #[error("records must be kept at least {min} days, not {days}")]
    RecordsTooShort {
        /// The days asked for.
        days: u32,
        /// The least allowed.
        min: u32,
    },
    /// More days than [`RetentionPolicy::MAX_DAYS`].
    #[error("{days} days is more than the {max} a policy may keep")]
    TooLong {
        /// The days asked for.
        days: u32,
        /// The most allowed.
        max: u32,
    },
    /// The rollups would go before the records they sum.
    #[error("rollups must be kept at least as long as records ({records} days), not {rollups}")]
    RollupsShorterThanRecords {
        /// The records' days.
        records: u32,
        /// The rollups' days asked for.
        rollups: u32,
    },
    /// A batch of no rows.
    #[error("a retention batch must remove at least one row")]
    EmptyBatch,
}

impl RetentionPolicy {
    /// The fewest days of records a policy keeps: a batch that brings a new 7-day block's
    /// first records seals the block before, and its heavy users' detail is built from
    /// that block's records, which must still be there.
    pub const MIN_RECORDS_DAYS: u32 = 7;
    /// The most days a policy names (about 100 years).
    pub const MAX_DAYS: u32 = 36_600;
    /// Records removed per statement unless told otherwise.
    pub const DEFAULT_BATCH_ROWS: u32 = 10_000;

    /// Keeps the records of the last `days` days (at least
    /// [`MIN_RECORDS_DAYS`](Self::MIN_RECORDS_DAYS)), and the rollups forever.
    pub fn keep_records_days(days: u32) -> Result<Self, BadRetentionPolicy> {
        if days < Self::MIN_RECORDS_DAYS {
            return Err(BadRetentionPolicy::RecordsTooShort {
                days,
                min: Self::MIN_RECORDS_DAYS,
            });
        }
        check_max(days)?;
        Ok(RetentionPolicy {
            records_days: days,
            rollups_days: None,
            batch_rows: Self::DEFAULT_BATCH_ROWS,
        })
    }

    /// Keeps the rollups of the last `days` days (at least as many as the records'),
    /// removing older ones by whole 7-day blocks too; answers before then are zeros.
    pub fn keep_rollups_days(mut self, days: u32) -> Result<Self, BadRetentionPolicy> {
        check_max(days)?;
        if days < self.records_days {
            return Err(BadRetentionPolicy::RollupsShorterThanRecords {
                records: self.records_days,
                rollups: days,
            });
        }
        self.rollups_days = Some(days);
        Ok(self)
    }

    /// Removes at most about `rows` records per statement (default
    /// [`DEFAULT_BATCH_ROWS`](Self::DEFAULT_BATCH_ROWS)), so that no statement holds
    /// locks or grows the database's log for long; records that share a start time go
    /// together.
    pub fn batch_rows(mut self, rows: u32) -> Result<Self, BadRetentionPolicy> {
        if rows == 0 {
            return Err(BadRetentionPolicy::EmptyBatch);
        }
        self.batch_rows = rows;
        Ok(self)
    }

    /// The days of records kept.
    pub fn records_days(&self) -> u32 {
        self.records_days
    }

    /// The days of rollups kept, `None` for ever.
    pub fn rollups_days(&self) -> Option<u32> {
        self.rollups_days
    }

    pub(super) fn batch(&self) -> i64 {
        i64::from(self.batch_rows)
    }

    /// The records' horizon at `now_us`: the start of the 7-day block that holds the
    /// instant `days` before.
    pub(super) fn records_before(&self, now_us: i64) -> i64 {
        horizon(now_us, self.records_days)
    }

    /// The rollups' horizon at `now_us`, if they have one.
    pub(super) fn rollups_before(&self, now_us: i64) -> Option<i64> {
        self.rollups_days.map(|days| horizon(now_us, days))
    }
}

fn check_max(days: u32) -> Result<(), BadRetentionPolicy> {
    if days > RetentionPolicy::MAX_DAYS {
        return Err(BadRetentionPolicy::TooLong {
            days,
            max: RetentionPolicy::MAX_DAYS,
        });
    }
    Ok(())
}

/// The start of the 7-day block holding `days` days before `now_us`. Blocks are the
/// unit every rollup divides into, so a horizon cuts no rollup row in two.
fn horizon(now_us: i64, days: u32) -> i64 {
    let instant = now_us.saturating_sub(i64::from(days) * DAY_US);
    instant.div_euclid(WEEK_US) * WEEK_US
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn horizons_fall_on_block_starts_between_days_and_a_week_more() {
        let policy = RetentionPolicy::keep_records_days(30).unwrap();
        for now in [
            0,
            1,
            WEEK_US - 1,
            WEEK_US,
            2_000 * DAY_US + 12_345,
            20_000 * DAY_US,
        ] {
            let cut = policy.records_before(now);
            assert_eq!(cut.rem_euclid(WEEK_US), 0);
            assert!(cut <= now - 30 * DAY_US, "{now}");
            assert!(cut > now - 37 * DAY_US, "{now}");
        }
    }

    #[test]
    fn bad_policies_are_refused_with_the_reason() {
        assert_eq!(
            RetentionPolicy::keep_records_days(6),
            Err(BadRetentionPolicy::RecordsTooShort { days: 6, min: 7 })
        );
        assert!(matches!(
            RetentionPolicy::keep_records_days(u32::MAX),
            Err(BadRetentionPolicy::TooLong { .. })
        ));
        let policy = RetentionPolicy::keep_records_days(30).unwrap();
        assert_eq!(
            policy.keep_rollups_days(29),
            Err(BadRetentionPolicy::RollupsShorterThanRecords {
                records: 30,
                rollups: 29
            })
        );
        assert_eq!(policy.batch_rows(0), Err(BadRetentionPolicy::EmptyBatch));
        assert_eq!(policy.rollups_before(0), None);
    }
}
