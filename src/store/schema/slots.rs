//! The time slots the rollups are kept in, and the integer arithmetic on them.

/// Microseconds in an hour.
pub(crate) const HOUR_US: i64 = 3_600_000_000;
/// Microseconds in a 15-minute slot.
pub(crate) const QUARTER_US: i64 = 900_000_000;
/// Microseconds in a day.
pub(crate) const DAY_US: i64 = 86_400_000_000;
/// Microseconds in a 7-day block (blocks count from the epoch, a Thursday: they are not
/// calendar weeks, only units of the per-user sums).
pub(crate) const WEEK_US: i64 = 7 * DAY_US;
/// Days in a block.
pub(crate) const DAYS: i64 = WEEK_US / DAY_US;

/// `n / d` rounded up, for a positive `d`.
pub(crate) fn ceil_div(n: i64, d: i64) -> i64 {
    n.div_euclid(d) + i64::from(n.rem_euclid(d) != 0)
}
