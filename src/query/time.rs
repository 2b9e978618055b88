//! Calendar buckets in a time zone: where each hour, day, ISO week or month starts.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

/// The width of a time series' buckets, in the calendar of the series' time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Granularity {
    /// From one local hour to the next.
    Hour,
    /// From local midnight to the next.
    Day,
    /// ISO weeks: from Monday 00:00 local to the next Monday.
    Week,
    /// From the first of a month, 00:00 local, to the first of the next.
    Month,
}

impl Granularity {
    /// The start of the bucket that holds `t`, as an instant.
    ///
    /// Buckets follow the local calendar: a day in a zone with daylight saving lasts 23 or
    /// 25 hours on the days the clocks change. An hour that happens twice when clocks go
    /// back makes two buckets; a day, week or month whose start happens twice (a zone
    /// whose clocks go back at 01:00 to midnight) starts at the first. A bucket whose
    /// local start does not exist (clocks skipped it) starts when the local time resumes.
    ///
    /// ```
    /// use chrono::{TimeZone, Utc};
    /// use tower_usage::query::Granularity;
    ///
    /// let kolkata: chrono_tz::Tz = "Asia/Kolkata".parse().unwrap();
    /// let t = Utc.with_ymd_and_hms(2026, 3, 4, 20, 0, 0).unwrap(); // 01:30 on the 5th there
    /// let day = Granularity::Day.bucket_start(t, kolkata);
    /// assert_eq!(day, Utc.with_ymd_and_hms(2026, 3, 4, 18, 30, 0).unwrap());
    /// ```
    pub fn bucket_start(self, t: DateTime<Utc>, tz: Tz) -> DateTime<Utc> {
        let start = self.truncate(t.with_timezone(&tz).naive_local());
        match tz.from_local_datetime(&start) {
            chrono::LocalResult::Single(x) => x.with_timezone(&Utc),
            // Only an hour is short enough to end before its local start comes again.
            chrono::LocalResult::Ambiguous(early, late) => {
                let late = late.with_timezone(&Utc);
                if self == Granularity::Hour && late <= t {
                    late
                } else {
                    early.with_timezone(&Utc)
                }
            }
            chrono::LocalResult::None => resume_after_gap(start, tz).min(t),
        }
    }

    /// The start of the bucket after the one that starts at `start`.
    pub(crate) fn next_start(self, start: DateTime<Utc>, tz: Tz) -> DateTime<Utc> {
        let local = self.truncate(start.with_timezone(&tz).naive_local());
        let mut next = earliest(self.advance(local), tz);
        // An hour that repeats when clocks go back starts a bucket the naive step skips.
        loop {
            let before = self.bucket_start(next - Duration::microseconds(1), tz);
            if before > start && before < next {
                next = before;
            } else {
                return next;
            }
        }
    }

    /// The starts of every bucket that overlaps `[from, to)`, the first one possibly before
    /// `from`; `None` if there would be more than `max`.
    pub(crate) fn starts(
        self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        tz: Tz,
        max: u64,
    ) -> Result<Vec<DateTime<Utc>>, u64> {
        let shortest = match self {
            Granularity::Hour => 1_800,
            Granularity::Day => 82_800,
            Granularity::Week => 7 * 86_400 - 3_600,
            Granularity::Month => 28 * 86_400 - 3_600,
        };
        let estimate = u64::try_from((to - from).num_seconds()).unwrap_or(0) / shortest + 2;
        if estimate > max.saturating_add(2) {
            return Err(estimate);
        }
        let mut starts = Vec::with_capacity(usize::try_from(estimate).unwrap_or(0));
        let mut start = self.bucket_start(from, tz);
        while start < to {
            starts.push(start);
            start = self.next_start(start, tz);
        }
        if starts.len() as u64 > max {
            return Err(starts.len() as u64);
        }
        Ok(starts)
    }

    fn truncate(self, local: NaiveDateTime) -> NaiveDateTime {
        let date = local.date();
        let midnight = |d: NaiveDate| d.and_hms_opt(0, 0, 0).unwrap_or(local);
        match self {
            Granularity::Hour => local
                .date()
                .and_hms_opt(local.hour(), 0, 0)
                .unwrap_or(local),
            Granularity::Day => midnight(date),
            Granularity::Week => {
                midnight(date - Duration::days(i64::from(date.weekday().num_days_from_monday())))
            }
            Granularity::Month => midnight(date.with_day(1).unwrap_or(date)),
        }
    }

    fn advance(self, start: NaiveDateTime) -> NaiveDateTime {
        match self {
            Granularity::Hour => start + Duration::hours(1),
            Granularity::Day => start + Duration::days(1),
            Granularity::Week => start + Duration::days(7),
            Granularity::Month => start
                .checked_add_months(chrono::Months::new(1))
                .unwrap_or(start + Duration::days(31)),
        }
    }
}

/// The first instant whose local time is `local`, or the end of the gap that skips it.
fn earliest(local: NaiveDateTime, tz: Tz) -> DateTime<Utc> {
    match tz.from_local_datetime(&local) {
        chrono::LocalResult::Single(x) | chrono::LocalResult::Ambiguous(x, _) => {
            x.with_timezone(&Utc)
        }
        chrono::LocalResult::None => resume_after_gap(local, tz),
    }
}

/// When local time resumes after a gap (clocks moved forward) that contains `local`.
fn resume_after_gap(local: NaiveDateTime, tz: Tz) -> DateTime<Utc> {
    let mut probe = local;
    // Gaps in the time zone database are whole minutes and at most a day long.
    for _ in 0..=1_440 {
        probe += Duration::minutes(1);
        if let Some(x) = tz.from_local_datetime(&probe).earliest() {
            // The gap ended somewhere in the last minute: its instant is the local
            // minute's start less how far into the minute the probe is (none).
            return x.with_timezone(&Utc);
        }
    }
    tz.from_utc_datetime(&local).with_timezone(&Utc)
}

/// The weekday (0 = Monday) and hour of the local time of `t`.
pub(crate) fn weekday_hour(t: DateTime<Utc>, tz: Tz) -> (usize, usize) {
    let local = t.with_timezone(&tz);
    (
        local.weekday().num_days_from_monday() as usize,
        local.hour() as usize,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    #[test]
    fn a_day_in_new_york_lasts_23_hours_when_clocks_go_forward() {
        let ny: Tz = "America/New_York".parse().unwrap();
        let day = Granularity::Day.bucket_start(utc(2026, 3, 8, 12, 0), ny);
        assert_eq!(day, utc(2026, 3, 8, 5, 0));
        assert_eq!(Granularity::Day.next_start(day, ny), utc(2026, 3, 9, 4, 0));
    }

    #[test]
    fn the_repeated_hour_is_two_buckets() {
        let ny: Tz = "America/New_York".parse().unwrap();
        // 2026-11-01: 01:00 EDT is 05:00 UTC, 01:00 EST is 06:00 UTC.
        let first = Granularity::Hour.bucket_start(utc(2026, 11, 1, 5, 30), ny);
        let second = Granularity::Hour.bucket_start(utc(2026, 11, 1, 6, 30), ny);
        assert_eq!(first, utc(2026, 11, 1, 5, 0));
        assert_eq!(second, utc(2026, 11, 1, 6, 0));
        assert_eq!(Granularity::Hour.next_start(first, ny), second);
        assert_eq!(
            Granularity::Hour.next_start(second, ny),
            utc(2026, 11, 1, 7, 0)
        );
    }

    #[test]
    fn a_skipped_midnight_starts_the_day_when_clocks_resume() {
        // Havana moves from 00:00 to 01:00 on 2026-03-08.
        let havana: Tz = "America/Havana".parse().unwrap();
        let t = utc(2026, 3, 8, 12, 0);
        let start = Granularity::Day.bucket_start(t, havana);
        assert_eq!(start, utc(2026, 3, 8, 5, 0));
        let before = Granularity::Day.bucket_start(start - Duration::microseconds(1), havana);
        assert_eq!(Granularity::Day.next_start(before, havana), start);
    }

    #[test]
    fn a_repeated_midnight_starts_one_25_hour_day() {
        // The Azores go from UTC+0 to UTC-1 at 01:00 on 2026-10-25: local midnight comes
        // at 00:00 UTC and again at 01:00 UTC, and the day lasts 25 hours.
        let azores: Tz = "Atlantic/Azores".parse().unwrap();
        let day = utc(2026, 10, 25, 0, 0);
        for t in [
            day,
            utc(2026, 10, 25, 0, 30),
            utc(2026, 10, 25, 1, 0),
            utc(2026, 10, 25, 23, 0),
        ] {
            assert_eq!(Granularity::Day.bucket_start(t, azores), day, "{t}");
        }
        assert_eq!(
            Granularity::Day.next_start(day, azores),
            utc(2026, 10, 26, 1, 0)
        );
        let before = Granularity::Day.bucket_start(day - Duration::microseconds(1), azores);
        assert_eq!(Granularity::Day.next_start(before, azores), day);
        // The repeated hour is still two hour buckets.
        assert_eq!(
            Granularity::Hour.bucket_start(utc(2026, 10, 25, 0, 30), azores),
            day
        );
        assert_eq!(
            Granularity::Hour.bucket_start(utc(2026, 10, 25, 1, 30), azores),
            utc(2026, 10, 25, 1, 0)
        );
        let starts = Granularity::Day
            .starts(
                utc(2026, 10, 24, 12, 0),
                utc(2026, 10, 26, 12, 0),
                azores,
                10,
            )
            .unwrap();
        assert_eq!(
            starts,
            [utc(2026, 10, 24, 0, 0), day, utc(2026, 10, 26, 1, 0)]
        );
    }

    #[test]
    fn weeks_start_on_monday_and_months_on_the_first() {
        let utc_tz: Tz = "UTC".parse().unwrap();
        // 2026-11-28 is a Saturday.
        let t = utc(2026, 11, 28, 15, 0);
        assert_eq!(
            Granularity::Week.bucket_start(t, utc_tz),
            utc(2026, 11, 23, 0, 0)
        );
        assert_eq!(
            Granularity::Month.bucket_start(t, utc_tz),
            utc(2026, 11, 1, 0, 0)
        );
        assert_eq!(
            Granularity::Month.next_start(utc(2026, 12, 1, 0, 0), utc_tz),
            utc(2027, 1, 1, 0, 0)
        );
    }

    #[test]
    fn too_many_buckets_are_refused_before_they_are_made() {
        let utc_tz: Tz = "UTC".parse().unwrap();
        let err = Granularity::Hour
            .starts(utc(2016, 1, 1, 0, 0), utc(2026, 1, 1, 0, 0), utc_tz, 10_000)
            .unwrap_err();
        assert!(err > 10_000);
    }
}
