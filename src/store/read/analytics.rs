//! The analytics queries on [`DieselStore`]. Each one plans which tables to read
//! ([`plan`](super::plan)), sums in the database, and finishes in Rust (percentiles,
//! shares, buckets in the caller's time zone), so every backend answers alike.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::detail;
use super::plan::{self, Group, Part, UserPart};
use crate::query::{
    lower_bounds, weekday_hour, Breakdown, Dashboard, Dimension, Filter, Granularity, Histogram,
    LatencySeries, Metrics, PeakHours, Point, QueryError, RankBy, Series, SeriesKey, TimeSeries,
    Totals, UserRank, UserUsage,
};
use crate::store::backend::run::Readable;
use crate::store::cache;
use crate::store::schema::histogram;
use crate::store::schema::slots::{HOUR_US, QUARTER_US, WEEK_US};
use crate::store::sql::{AggRow, HistPair, Sql, UserAgg, UserSums, ValueCount};
use crate::store::{DieselStore, StoreError};

/// How many rows the breakdowns in [`DieselStore::dashboard`] and
/// [`DieselStore::user_usage`] keep.
const DASHBOARD_ROWS: usize = 10;

/// The checked range of a filter, in microseconds.
#[derive(Debug, Clone, Copy)]
struct Span {
    from: i64,
    to: i64,
}

impl DieselStore {
    /// Refuses what a query of `filter` would refuse, without reading anything.
    #[cfg_attr(not(feature = "api"), allow(dead_code))]
    pub(crate) fn check_filter(&self, filter: &Filter) -> Result<(), QueryError> {
        self.span(filter).map(drop)
    }

    fn span(&self, filter: &Filter) -> Result<Span, QueryError> {
        filter.check_names()?;
        let (from, to) = filter.range.micros(self.inner.limits.max_range)?;
        Ok(Span { from, to })
    }

    pub(crate) fn check_limit(&self, limit: usize) -> Result<(), QueryError> {
        let max = self.inner.limits.max_limit;
        match limit {
            0 => Err(QueryError::ZeroLimit),
            n if n > max => Err(QueryError::LimitTooLarge { limit, max }),
            _ => Ok(()),
        }
    }

    /// The pieces a read of `span` is cut into: the span itself without an answer cache,
    /// with one the settled days, today's closed slots and the open tail, each read and
    /// kept apart (see [`cache::pieces`]).
    fn pieces(&self, span: &Span) -> Vec<Span> {
        let pieces = match &self.inner.cache {
            None => Vec::new(),
            Some(_) => cache::pieces(span.from, span.to, Utc::now().timestamp_micros()),
        };
        if pieces.is_empty() {
            return vec![*span];
        }
        pieces
            .into_iter()
            .map(|(from, to)| Span { from, to })
            .collect()
    }

    /// The rows `sql` reads, the records of `piece` alone: from the answer cache when it
    /// keeps them and no record was written into the piece since, else from the
    /// database (with parallel workers off on PostgreSQL when `rollups`, see
    /// `load_rollups`).
    async fn read<T: Readable + Sync>(
        &self,
        sql: Sql,
        piece: &Span,
        rollups: bool,
    ) -> Result<Arc<Vec<T>>, StoreError> {
        let load = |sql| self.load_analytics(sql, rollups);
        match &self.inner.cache {
            None => load(sql).await.map(Arc::new),
            Some(cache) => {
                let url = &self.inner.url;
                let key = format!("{url}\n{}\n{}", std::any::type_name::<T>(), sql.key());
                cache.rows(key, (piece.from, piece.to), || load(sql)).await
            }
        }
    }

    /// What `compute` answers about the records `filter` selects, kept whole in the
    /// answer cache (when there is one) under `what` (the question and its parameters
    /// besides the filter), for as long as no record is written into the filter's range.
    /// `compute` comes boxed: the questions nest (a dashboard asks for a series), and
    /// each would otherwise carry the whole of the next in its own future.
    async fn answer<V, F>(&self, what: String, filter: &Filter, compute: F) -> Result<V, StoreError>
    where
        V: Clone + serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static,
        F: std::future::Future<Output = Result<V, StoreError>>,
    {
        let Some(cache) = &self.inner.cache else {
            return compute.await;
        };
        let span = self.span(filter)?;
        let key = format!("{}\n{what}\n{filter:?}", self.inner.url);
        let answer = cache.answer(key, (span.from, span.to), || compute).await?;
        Ok(V::clone(&answer))
    }

    /// Which parts answer an aggregate of `filter` grouped by `group`; `days` says
    /// whether a UTC day may be counted as one unit of the grouping, `histograms` that
    /// the parts must keep latency histograms.
    fn plan(
        &self,
        filter: &Filter,
        span: &Span,
        group: Group,
        days: bool,
        histograms: bool,
    ) -> Vec<Part> {
        let quarter = self.inner.limits.read_rollups
            && plan::rollups_serve(filter)
            && plan::rolled_up(group.key)
            && group.slot_us.is_none_or(|us| us == QUARTER_US);
        let totals = quarter && !histograms && group.key.is_none() && plan::time_only(filter);
        plan::parts(span.from, span.to, quarter, quarter && days, totals)
    }

    async fn aggregate(
        &self,
        filter: &Filter,
        span: &Span,
        group: Group,
        days: bool,
    ) -> Result<Vec<GroupSums>, StoreError> {
        let pieces = self.pieces(span);
        let mut sums: Vec<GroupSums> = Vec::new();
        // Where each group and slot stands in `sums`: it may have rows in several pieces.
        let mut at: HashMap<(Option<String>, Option<i64>), usize> = HashMap::new();
        for piece in &pieces {
            let parts = self.plan(filter, piece, group, days, false);
            let mut sql = Sql::new(self.dialect());
            plan::aggregate(&mut sql, filter, group, &parts);
            let rows = self.read::<AggRow>(sql, piece, false).await?;
            if pieces.len() == 1 {
                return Ok(rows.iter().map(GroupSums::of).collect());
            }
            for row in rows.iter() {
                let totals = row.measures.totals();
                match at.entry((row.k1.clone(), row.slot)) {
                    Entry::Occupied(i) => sums[*i.get()].totals.add(&totals),
                    Entry::Vacant(place) => {
                        place.insert(sums.len());
                        sums.push(GroupSums::of(row));
                    }
                }
            }
        }
        Ok(sums)
    }

    /// Per-minute sums of the records `filter` selects in the hour up to the minute
    /// holding `now` (the filter's own range is not used): 60 points, oldest first, and
    /// the first minute's start. Read from the hour's raw rows, so the cost follows the
    /// last hour's traffic, not the number of stored records.
    #[cfg_attr(not(feature = "api"), allow(dead_code))]
    pub(crate) async fn last_hour_by_minute(
        &self,
        filter: &Filter,
        now: DateTime<Utc>,
    ) -> Result<(i64, Vec<Point>), StoreError> {
        const MINUTE_US: i64 = 60_000_000;
        filter.check_names()?;
        let end_minute = now.timestamp_micros().div_euclid(MINUTE_US) + 1;
        let first_minute = (end_minute - 60).max(0);
        let group = Group {
            key: None,
            slot_us: Some(MINUTE_US),
        };
        let mut sql = Sql::new(self.dialect());
        let raw = Part::Raw(first_minute * MINUTE_US, end_minute * MINUTE_US);
        plan::aggregate(&mut sql, filter, group, &[raw]);
        let rows: Vec<AggRow> = self.load_analytics(sql, false).await?;
        let mut minutes = vec![Totals::default(); 60];
        for row in rows {
            let index = row
                .slot
                .and_then(|slot| usize::try_from(slot - first_minute).ok());
            if let Some(minute) = index.and_then(|i| minutes.get_mut(i)) {
                minute.add(&row.measures.totals());
            }
        }
        Ok((first_minute, minutes.iter().map(Totals::point).collect()))
    }

    /// Requests, users, tokens, cost, errors, bytes, and latency and time-to-first-byte
    /// statistics for the records `filter` selects.
    ///
    /// ```
    /// use tower_usage::query::{Filter, TimeRange};
    /// use tower_usage::{store::DieselStore, TokenUsage, UsageRecord, UsageSink};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = DieselStore::connect("sqlite::memory:").await?;
    /// let mut record = UsageRecord::builder().user("alice").tokens(TokenUsage::new(10, 5)).build();
    /// record.started_at -= chrono::Duration::minutes(1);
    /// store.write_batch(&[record]).await?;
    ///
    /// let metrics = store.metrics(&Filter::new(TimeRange::last_hours(1))).await?;
    /// assert_eq!((metrics.requests, metrics.unique_users, metrics.tokens.total), (1, 1, 15));
    /// # Ok(()) }
    /// ```
    pub async fn metrics(&self, filter: &Filter) -> Result<Metrics, StoreError> {
        let what = "metrics".to_owned();
        self.answer(what, filter, Box::pin(self.read_metrics(filter)))
            .await
    }

    async fn read_metrics(&self, filter: &Filter) -> Result<Metrics, StoreError> {
        let span = self.span(filter)?;
        let group = Group {
            key: None,
            slot_us: None,
        };
        // `join!`, not `try_join!`: see `dashboard`.
        let (totals, ranked, histograms) = tokio::join!(
            self.aggregate(filter, &span, group, true),
            self.ranked(filter, &span, RankBy::Requests, 1),
            self.histograms(filter, &span),
        );
        let (totals, (_, users), (latency, ttfb)) = (totals?, ranked?, histograms?);
        Ok(sum(&totals).metrics(users, &latency, &ttfb))
    }

    /// [`metrics`](Self::metrics) without the unique users (0), and without the
    /// percentiles (`None`) unless `percentiles`: what a check of a threshold needs,
    /// for one or two statements instead of three.
    pub(crate) async fn light_metrics(
        &self,
        filter: &Filter,
        percentiles: bool,
    ) -> Result<Metrics, StoreError> {
        let span = self.span(filter)?;
        let group = Group {
            key: None,
            slot_us: None,
        };
        let totals = self.aggregate(filter, &span, group, true).await?;
        let (latency, ttfb) = match percentiles {
            true => self.histograms(filter, &span).await?,
            false => Default::default(),
        };
        Ok(sum(&totals).metrics(0, &latency, &ttfb))
    }

    async fn histograms(
        &self,
        filter: &Filter,
        span: &Span,
    ) -> Result<(Histogram, Histogram), StoreError> {
        let mut all = self.slotted_histograms(filter, span, None, true).await?;
        Ok(all.remove(&None).unwrap_or_default())
    }

    /// The latency and time-to-first-byte histograms of the records `filter` selects,
    /// per time slot of `slot_us` microseconds (the slot's number is the key), or all in
    /// one under `None`. Slots of 15 minutes may be read from the rollups (whole UTC
    /// days too where `days` allows, as in [`plan`](Self::plan)); any other width reads
    /// raw rows.
    async fn slotted_histograms(
        &self,
        filter: &Filter,
        span: &Span,
        slot_us: Option<i64>,
        days: bool,
    ) -> Result<HashMap<Option<i64>, (Histogram, Histogram)>, StoreError> {
        let group = Group { key: None, slot_us };
        let mut slots: HashMap<Option<i64>, (Histogram, Histogram)> = HashMap::new();
        for piece in self.pieces(span) {
            let parts = self.plan(filter, &piece, group, days, true);
            let mut raw = Vec::new();
            let mut rolled = Vec::new();
            for part in parts {
                match part {
                    Part::Raw(from, to) => raw.push((from, to)),
                    Part::Rollup(rollup, from, to) => rolled.push((rollup, from, to)),
                    Part::Totals(..) => {}
                }
            }
            if !raw.is_empty() {
                let mut sql = Sql::new(self.dialect());
                plan::raw_values(&mut sql, filter, &raw, slot_us);
                for row in self.read::<ValueCount>(sql, &piece, false).await?.iter() {
                    let (latency, ttfb) = slots.entry(row.slot).or_default();
                    let histogram = if row.kind == 0 { latency } else { ttfb };
                    histogram.add(row.v, row.n);
                }
            }
            if !rolled.is_empty() {
                let mut sql = Sql::new(self.dialect());
                plan::rollup_histograms(&mut sql, filter, &rolled, slot_us.is_some());
                for row in self.read::<HistPair>(sql, &piece, false).await?.iter() {
                    let (latency, ttfb) = slots.entry(row.slot).or_default();
                    let read = histogram::merge_into(latency, &row.latency_hist)
                        .and(histogram::merge_into(ttfb, &row.ttfb_hist));
                    read.ok_or_else(|| {
                        StoreError::Corrupt("an unreadable rollup histogram".into())
                    })?;
                }
            }
        }
        Ok(slots)
    }

    /// The records `filter` selects, grouped by `dimension`: the `limit` largest groups
    /// and the rest summed as `other`.
    pub async fn breakdown(
        &self,
        filter: &Filter,
        dimension: Dimension,
        limit: usize,
    ) -> Result<Breakdown, StoreError> {
        let what = format!("breakdown {dimension:?} {limit}");
        self.answer(
            what,
            filter,
            Box::pin(self.read_breakdown(filter, dimension, limit)),
        )
        .await
    }

    async fn read_breakdown(
        &self,
        filter: &Filter,
        dimension: Dimension,
        limit: usize,
    ) -> Result<Breakdown, StoreError> {
        let span = self.span(filter)?;
        self.check_limit(limit)?;
        let group = Group {
            key: Some(dimension),
            slot_us: None,
        };
        let rows = self.aggregate(filter, &span, group, true).await?;
        let groups = rows.into_iter().map(|row| (row.key, row.totals)).collect();
        Ok(Breakdown::from_groups(dimension, groups, limit))
    }

    /// [`breakdown`](Self::breakdown) by service.
    pub async fn by_service(&self, filter: &Filter, limit: usize) -> Result<Breakdown, StoreError> {
        self.breakdown(filter, Dimension::Service, limit).await
    }

    /// [`breakdown`](Self::breakdown) by model.
    pub async fn by_model(&self, filter: &Filter, limit: usize) -> Result<Breakdown, StoreError> {
        self.breakdown(filter, Dimension::Model, limit).await
    }

    /// [`breakdown`](Self::breakdown) by provider, with each provider's error rate.
    pub async fn by_provider(
        &self,
        filter: &Filter,
        limit: usize,
    ) -> Result<Breakdown, StoreError> {
        self.breakdown(filter, Dimension::Provider, limit).await
    }

    /// [`breakdown`](Self::breakdown) by client platform (read from raw rows).
    pub async fn by_client(&self, filter: &Filter, limit: usize) -> Result<Breakdown, StoreError> {
        self.breakdown(filter, Dimension::Client, limit).await
    }

    /// [`breakdown`](Self::breakdown) by country (read from raw rows).
    pub async fn by_country(&self, filter: &Filter, limit: usize) -> Result<Breakdown, StoreError> {
        self.breakdown(filter, Dimension::Country, limit).await
    }

    /// The records `filter` selects, counted per `granularity` bucket of `tz`'s calendar,
    /// every bucket present (zeros where nothing happened).
    ///
    /// ```
    /// use tower_usage::query::{Filter, Granularity, TimeRange, Tz};
    /// use tower_usage::store::DieselStore;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = DieselStore::connect("sqlite::memory:").await?;
    /// let tz: Tz = "Europe/Berlin".parse()?;
    /// let series = store.time_series(&Filter::new(TimeRange::last_days(7)), Granularity::Day, tz).await?;
    /// assert!(series.buckets.len() >= 7);
    /// assert_eq!(series.series[0].points.len(), series.buckets.len());
    /// # Ok(()) }
    /// ```
    pub async fn time_series(
        &self,
        filter: &Filter,
        granularity: Granularity,
        tz: Tz,
    ) -> Result<TimeSeries, StoreError> {
        self.series(filter, granularity, tz, None).await
    }

    /// [`time_series`](Self::time_series) split by `dimension` into stacked series: the
    /// `top` values with the most requests over the range, then records without a value
    /// (`Missing`) and the rest (`Other`), each only if it has records.
    pub async fn time_series_split(
        &self,
        filter: &Filter,
        granularity: Granularity,
        tz: Tz,
        dimension: Dimension,
        top: usize,
    ) -> Result<TimeSeries, StoreError> {
        self.check_limit(top)?;
        self.series(filter, granularity, tz, Some((dimension, top)))
            .await
    }

    /// Latency and time-to-first-byte statistics (mean, p50, p95, p99) of the records
    /// `filter` selects, per bucket of `granularity` in `tz`'s calendar: what a
    /// percentile chart draws.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_usage::query::{Filter, Granularity, TimeRange, Tz};
    /// use tower_usage::{store::DieselStore, UsageRecord, UsageSink};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = DieselStore::connect("sqlite::memory:").await?;
    /// let mut record = UsageRecord::builder().duration(Duration::from_millis(120)).build();
    /// record.started_at -= chrono::Duration::minutes(1);
    /// store.write_batch(&[record]).await?;
    ///
    /// let day = Filter::new(TimeRange::last_hours(24));
    /// let series = store.latency_series(&day, Granularity::Hour, Tz::UTC).await?;
    /// assert_eq!(series.latency.len(), series.buckets.len());
    /// let last = series.latency.last().unwrap();
    /// assert_eq!(last.p95_us, Some(tower_usage::query::quantize_micros(120_000)));
    /// # Ok(()) }
    /// ```
    pub async fn latency_series(
        &self,
        filter: &Filter,
        granularity: Granularity,
        tz: Tz,
    ) -> Result<LatencySeries, StoreError> {
        let what = format!("latency {granularity:?} {tz}");
        self.answer(
            what,
            filter,
            Box::pin(self.read_latency_series(filter, granularity, tz)),
        )
        .await
    }

    async fn read_latency_series(
        &self,
        filter: &Filter,
        granularity: Granularity,
        tz: Tz,
    ) -> Result<LatencySeries, StoreError> {
        let (span, starts, days) = self.buckets(filter, granularity, tz)?;
        let bucket_of = |t: DateTime<Utc>| granularity.bucket_start(t, tz);
        // The bucket a slot starting at `t` counts in: the last that starts at or before
        // it (a slot may start before the first bucket, whose records it holds).
        let index = |t: DateTime<Utc>| starts.partition_point(|s| *s <= t).saturating_sub(1);
        // 15-minute slots serve where no bucket starts inside one (a zone whose offset is
        // not a whole quarter hour), seconds elsewhere.
        let whole_quarters = starts
            .iter()
            .skip(1)
            .all(|s| s.timestamp_micros().rem_euclid(QUARTER_US) == 0);
        let slot_us = if whole_quarters {
            QUARTER_US
        } else {
            1_000_000
        };
        let (sums, histograms) = tokio::join!(
            self.slotted(filter, &span, None, days, bucket_of),
            self.slotted_histograms(filter, &span, Some(slot_us), days),
        );
        let mut totals = vec![Totals::default(); starts.len()];
        for (_, at, sum) in sums? {
            totals[index(at)].add(&sum);
        }
        let mut per_bucket = vec![(Histogram::default(), Histogram::default()); starts.len()];
        for (slot, (latency, ttfb)) in histograms? {
            let at = slot
                .and_then(|slot| slot.checked_mul(slot_us))
                .and_then(DateTime::from_timestamp_micros)
                .ok_or_else(|| StoreError::Corrupt(format!("time slot {slot:?} out of range")))?;
            let (l, t) = &mut per_bucket[index(at)];
            l.merge(&latency);
            t.merge(&ttfb);
        }
        let (latency, ttfb) = totals
            .iter()
            .zip(&per_bucket)
            .map(|(sum, (l, t))| sum.latency(l, t))
            .unzip();
        Ok(LatencySeries {
            granularity,
            time_zone: tz.name().to_owned(),
            buckets: starts,
            latency,
            ttfb,
        })
    }

    async fn series(
        &self,
        filter: &Filter,
        granularity: Granularity,
        tz: Tz,
        split: Option<(Dimension, usize)>,
    ) -> Result<TimeSeries, StoreError> {
        let what = format!("series {granularity:?} {tz} {split:?}");
        self.answer(
            what,
            filter,
            Box::pin(self.read_series(filter, granularity, tz, split)),
        )
        .await
    }

    async fn read_series(
        &self,
        filter: &Filter,
        granularity: Granularity,
        tz: Tz,
        split: Option<(Dimension, usize)>,
    ) -> Result<TimeSeries, StoreError> {
        let (span, starts, days) = self.buckets(filter, granularity, tz)?;
        let key = split.map(|(d, _)| d);
        let bucket_of = |t: DateTime<Utc>| granularity.bucket_start(t, tz);
        let rows = self.slotted(filter, &span, key, days, bucket_of).await?;
        Ok(assemble(granularity, tz, starts, split, rows))
    }

    /// The checked range of a series over `filter`, its buckets' starts, and whether a
    /// whole UTC day lies inside one bucket (only for day-or-longer buckets in UTC).
    fn buckets(
        &self,
        filter: &Filter,
        granularity: Granularity,
        tz: Tz,
    ) -> Result<(Span, Vec<DateTime<Utc>>, bool), StoreError> {
        let span = self.span(filter)?;
        let max = self.inner.limits.max_buckets;
        let starts = granularity
            .starts(filter.range.from, filter.range.to, tz, max)
            .map_err(|buckets| QueryError::TooManyBuckets { buckets, max })?;
        let days = tz == Tz::UTC && granularity != Granularity::Hour;
        Ok((span, starts, days))
    }

    /// Sums per dimension value and time slot, each slot given by its start; the slots
    /// are 15 minutes wide (whole days where `days` allows), or one second when a
    /// 15-minute slot would straddle two of `bucket_of`'s buckets (a zone whose offset is
    /// not a whole quarter hour).
    async fn slotted<K: PartialEq>(
        &self,
        filter: &Filter,
        span: &Span,
        key: Option<Dimension>,
        days: bool,
        bucket_of: impl Fn(DateTime<Utc>) -> K,
    ) -> Result<Vec<(Option<String>, DateTime<Utc>, Totals)>, StoreError> {
        // A slot read back is a stored number: one out of range is a corrupt row.
        let start = |slot: i64, width: i64| {
            slot.checked_mul(width)
                .filter(|us| us.checked_add(width - 1).is_some())
                .and_then(DateTime::from_timestamp_micros)
                .ok_or_else(|| StoreError::Corrupt(format!("time slot {slot} out of range")))
        };
        let fits = |slot: i64, width: i64| -> Result<bool, StoreError> {
            let first = start(slot, width)?;
            let last = first + chrono::Duration::microseconds(width - 1);
            Ok(bucket_of(first) == bucket_of(last))
        };
        let quarter = Group {
            key,
            slot_us: Some(QUARTER_US),
        };
        let rows = self.aggregate(filter, span, quarter, days).await?;
        let mut all_fit = true;
        for row in &rows {
            if !fits(row.slot.unwrap_or(0), QUARTER_US)? {
                all_fit = false;
                break;
            }
        }
        let rows = if all_fit {
            rows.into_iter().map(|r| (r, QUARTER_US)).collect()
        } else {
            const SECOND: i64 = 1_000_000;
            let seconds = Group {
                key,
                slot_us: Some(SECOND),
            };
            let mut rows = Vec::new();
            for piece in self.pieces(span) {
                let mut sql = Sql::new(self.dialect());
                let parts = [Part::Raw(piece.from, piece.to)];
                plan::aggregate(&mut sql, filter, seconds, &parts);
                let read = self.read::<AggRow>(sql, &piece, false).await?;
                rows.extend(read.iter().map(|r| (GroupSums::of(r), SECOND)));
            }
            rows
        };
        rows.into_iter()
            .map(|(row, width): (GroupSums, i64)| {
                let at = start(row.slot.unwrap_or(0), width)?;
                Ok((row.key, at, row.totals))
            })
            .collect()
    }

    /// The `limit` users with the most requests, tokens or cost among the records
    /// `filter` selects; ties go to the user whose name sorts first (byte order).
    pub async fn top_users(
        &self,
        filter: &Filter,
        by: RankBy,
        limit: usize,
    ) -> Result<Vec<UserRank>, StoreError> {
        let what = format!("top users {by:?} {limit}");
        self.answer(
            what,
            filter,
            Box::pin(self.read_top_users(filter, by, limit)),
        )
        .await
    }

    async fn read_top_users(
        &self,
        filter: &Filter,
        by: RankBy,
        limit: usize,
    ) -> Result<Vec<UserRank>, StoreError> {
        let span = self.span(filter)?;
        self.check_limit(limit)?;
        Ok(self.ranked(filter, &span, by, limit).await?.0)
    }

    /// The top users and how many users there are in all, from one pass over the
    /// per-user sums. Read in pieces (with an answer cache), every piece's users are
    /// read and ranked here, since the top of each piece is not the top of the whole.
    async fn ranked(
        &self,
        filter: &Filter,
        span: &Span,
        by: RankBy,
        limit: usize,
    ) -> Result<(Vec<UserRank>, i64), StoreError> {
        let rollups = self.inner.limits.read_rollups && plan::time_only(filter);
        let pieces = self.pieces(span);
        let whole = pieces.len() == 1;
        let mut users: HashMap<String, Totals> = HashMap::new();
        let mut ranked = Vec::new();
        let mut count = 0;
        for piece in &pieces {
            let parts = if rollups {
                plan::user_parts(piece.from, piece.to)
            } else {
                vec![UserPart::Raw(piece.from, piece.to)]
            };
            let mut sql = Sql::new(self.dialect());
            let piece_limit = if whole { limit } else { usize::MAX };
            plan::user_sums(&mut sql, filter, &parts, by, piece_limit);
            let rows = self.read::<UserSums>(sql, piece, rollups).await?;
            if whole {
                count = rows.first().map_or(0, |r| r.groups);
                ranked = rows
                    .iter()
                    .map(|row| (row.k1.clone(), row.totals()))
                    .collect();
            } else {
                for row in rows.iter() {
                    users.entry(row.k1.clone()).or_default().add(&row.totals());
                }
            }
        }
        if !whole {
            count = i64::try_from(users.len()).unwrap_or(i64::MAX);
            ranked = top(users, by, limit);
        }
        let ranks = ranked
            .into_iter()
            .map(|(user, totals)| UserRank {
                user,
                requests: u64::try_from(totals.requests).unwrap_or(0),
                errors: u64::try_from(totals.errors).unwrap_or(0),
                tokens: totals.tokens(),
                cost_micros: totals.cost_micros,
            })
            .collect();
        Ok((ranks, count))
    }

    /// Requests per weekday and hour of `tz`'s local time.
    pub async fn peak_hours(&self, filter: &Filter, tz: Tz) -> Result<PeakHours, StoreError> {
        let what = format!("peak hours {tz}");
        self.answer(what, filter, Box::pin(self.read_peak_hours(filter, tz)))
            .await
    }

    async fn read_peak_hours(&self, filter: &Filter, tz: Tz) -> Result<PeakHours, StoreError> {
        let span = self.span(filter)?;
        let hour_of = |t: DateTime<Utc>| weekday_hour(t, tz);
        let rows = self.slotted(filter, &span, None, false, hour_of).await?;
        let mut counts = vec![vec![0u64; 24]; 7];
        for (_, at, totals) in rows {
            let (day, hour) = hour_of(at);
            counts[day][hour] += u64::try_from(totals.requests).unwrap_or(0);
        }
        Ok(PeakHours {
            time_zone: tz.name().to_owned(),
            counts,
        })
    }

    /// One user's metrics, daily series in `tz` and breakdowns by service and model:
    /// what a "my usage" page shows. `filter`'s own user, if any, is replaced by `user`.
    pub async fn user_usage(
        &self,
        user: &str,
        filter: &Filter,
        tz: Tz,
    ) -> Result<UserUsage, StoreError> {
        let what = format!("user usage {user:?} {tz}");
        self.answer(
            what,
            filter,
            Box::pin(self.read_user_usage(user, filter, tz)),
        )
        .await
    }

    async fn read_user_usage(
        &self,
        user: &str,
        filter: &Filter,
        tz: Tz,
    ) -> Result<UserUsage, StoreError> {
        let filter = filter.clone().user(user);
        let span = self.span(&filter)?;
        let max = self.inner.limits.max_buckets;
        let starts = Granularity::Day
            .starts(filter.range.from, filter.range.to, tz, max)
            .map_err(|buckets| QueryError::TooManyBuckets { buckets, max })?;
        // Summed in the database per day of `tz`, service and model, and counted per
        // histogram bucket: from the per-user detail rows where they serve, and in one
        // pass over the user's raw rows (through the user index) elsewhere.
        let days: Vec<i64> = starts.iter().map(DateTime::timestamp_micros).collect();
        let detail = self.user_detail_served(&filter, &span, &days).await?;
        let buckets = self.inner.buckets.get_or_init(lower_bounds);
        let mut rows: Vec<UserAgg> = Vec::new();
        for piece in self.pieces(&span) {
            let detail = detail::clip(&detail, piece.from, piece.to);
            let raw = detail::rest(piece.from, piece.to, &detail);
            let mut sql = Sql::new(self.dialect());
            plan::user_usage(&mut sql, &filter, &raw, &detail, &days, buckets);
            if !sql.is_empty() {
                let read = self.read::<UserAgg>(sql, &piece, raw.is_empty()).await?;
                rows.extend(read.iter().cloned());
            }
        }
        let mut all = Totals::default();
        let (mut latency, mut ttfb) = (Histogram::default(), Histogram::default());
        let mut services: HashMap<Option<String>, Totals> = HashMap::new();
        let mut models: HashMap<Option<String>, Totals> = HashMap::new();
        let mut points = Vec::with_capacity(rows.len());
        let corrupt = || StoreError::Corrupt("a user's sums out of range".into());
        for row in rows {
            let totals = row.measures.totals();
            let k = usize::try_from(row.k.unwrap_or(0)).map_err(|_| corrupt())?;
            match row.kind {
                0 => {
                    all.add(&totals);
                    services.entry(row.service).or_default().add(&totals);
                    models.entry(row.model).or_default().add(&totals);
                    let at = *starts.get(k).ok_or_else(corrupt)?;
                    points.push((None, at, totals));
                }
                kind => {
                    let b = u16::try_from(k).map_err(|_| corrupt())?;
                    let histogram = if kind == 1 { &mut latency } else { &mut ttfb };
                    histogram.add_bucket(b, totals.requests);
                }
            }
        }
        let users = i64::from(all.requests > 0);
        Ok(UserUsage {
            user: user.to_owned(),
            metrics: all.metrics(users, &latency, &ttfb),
            daily: assemble(Granularity::Day, tz, starts, None, points),
            by_service: Breakdown::from_groups(
                Dimension::Service,
                services.into_iter().collect(),
                DASHBOARD_ROWS,
            ),
            by_model: Breakdown::from_groups(
                Dimension::Model,
                models.into_iter().collect(),
                DASHBOARD_ROWS,
            ),
        })
    }

    /// The parts of the span that the user's [`detail`] rows serve for `filter` (one
    /// user's records and nothing else) with daily buckets starting at `days`: none when
    /// the filter names anything besides the user, or a day starts off the hour.
    async fn user_detail_served(
        &self,
        filter: &Filter,
        span: &Span,
        days: &[i64],
    ) -> Result<Vec<(i64, i64)>, StoreError> {
        let only_user = Filter {
            user: None,
            ..filter.clone()
        };
        let serves = self.inner.limits.read_rollups
            && plan::time_only(&only_user)
            && days.iter().all(|d| d.rem_euclid(HOUR_US) == 0);
        if !serves {
            return Ok(Vec::new());
        }
        let Some(user) = filter.user.as_deref() else {
            return Ok(Vec::new());
        };
        let (first, last) = (
            span.from.div_euclid(WEEK_US),
            (span.to - 1).div_euclid(WEEK_US),
        );
        let blocks: Vec<i64> = (first.max(0)..=last).collect();
        if blocks.is_empty() {
            return Ok(Vec::new());
        }
        let sql = detail::user_blocks(self.dialect(), user, &blocks);
        let blocks: Vec<i64> = self
            .load::<detail::DetailedBlock>(sql)
            .await?
            .into_iter()
            .map(|b| b.block)
            .collect();
        Ok(detail::served(span.from, span.to, &blocks))
    }

    /// Metrics, the top services, models and users, a daily series and peak hours, in
    /// one answer; the parts are read concurrently on separate connections.
    pub async fn dashboard(&self, filter: &Filter, tz: Tz) -> Result<Dashboard, StoreError> {
        let what = format!("dashboard {tz}");
        self.answer(what, filter, Box::pin(self.read_dashboard(filter, tz)))
            .await
    }

    async fn read_dashboard(&self, filter: &Filter, tz: Tz) -> Result<Dashboard, StoreError> {
        let span = self.span(filter)?;
        // The totals are the sum of the services' sums, and the ranking's pass over the
        // per-user sums also counts the users: two reads fewer.
        let services = Group {
            key: Some(Dimension::Service),
            slot_us: None,
        };
        // Every part runs to its end even when one fails: cancelling a SQLite query in
        // flight makes diesel-async block in place, which panics on a current-thread
        // runtime.
        let (services, histograms, by_model, daily, ranked, peak_hours) = tokio::join!(
            self.aggregate(filter, &span, services, true),
            self.histograms(filter, &span),
            self.by_model(filter, DASHBOARD_ROWS),
            self.time_series(filter, Granularity::Day, tz),
            self.ranked(filter, &span, RankBy::Requests, DASHBOARD_ROWS),
            self.peak_hours(filter, tz),
        );
        let (services, (latency, ttfb), by_model) = (services?, histograms?, by_model?);
        let (daily, (top_users, users), peak_hours) = (daily?, ranked?, peak_hours?);
        let mut totals = Totals::default();
        let services = services
            .into_iter()
            .map(|row| {
                totals.add(&row.totals);
                (row.key, row.totals)
            })
            .collect();
        let by_service = Breakdown::from_groups(Dimension::Service, services, DASHBOARD_ROWS);
        let metrics = totals.metrics(users, &latency, &ttfb);
        Ok(Dashboard {
            metrics,
            by_service,
            by_model,
            daily,
            top_users,
            peak_hours,
        })
    }
}

/// Sums rows (a dimension value, an instant within the range, sums) into the series of
/// `starts`' buckets.
fn assemble(
    granularity: Granularity,
    tz: Tz,
    starts: Vec<DateTime<Utc>>,
    split: Option<(Dimension, usize)>,
    rows: impl IntoIterator<Item = (Option<String>, DateTime<Utc>, Totals)>,
) -> TimeSeries {
    let mut by_key: HashMap<Option<String>, Vec<Totals>> = HashMap::new();
    for (key, at, totals) in rows {
        let Ok(i) = starts.binary_search(&granularity.bucket_start(at, tz)) else {
            continue;
        };
        let points = by_key
            .entry(key)
            .or_insert_with(|| vec![Totals::default(); starts.len()]);
        points[i].add(&totals);
    }
    let series = match split {
        None => {
            let points = by_key
                .remove(&None)
                .unwrap_or_else(|| vec![Totals::default(); starts.len()]);
            vec![series(SeriesKey::Total, &points)]
        }
        Some((_, top)) => split_series(by_key, top, starts.len()),
    };
    TimeSeries {
        granularity,
        time_zone: tz.name().to_owned(),
        split: split.map(|(d, _)| d),
        buckets: starts,
        series,
    }
}

/// A group's sums: its dimension value and time slot, when grouped by them.
struct GroupSums {
    key: Option<String>,
    slot: Option<i64>,
    totals: Totals,
}

impl GroupSums {
    fn of(row: &AggRow) -> Self {
        GroupSums {
            key: row.k1.clone(),
            slot: row.slot,
            totals: row.measures.totals(),
        }
    }
}

/// The groups' sums added up.
fn sum(groups: &[GroupSums]) -> Totals {
    let mut sum = Totals::default();
    groups.iter().for_each(|group| sum.add(&group.totals));
    sum
}

fn series(key: SeriesKey, totals: &[Totals]) -> Series {
    Series {
        key,
        points: totals.iter().map(Totals::point).collect::<Vec<Point>>(),
    }
}

/// The `top` values by requests (ties by byte order), then `Missing`, then `Other`.
fn split_series(
    by_key: HashMap<Option<String>, Vec<Totals>>,
    top: usize,
    buckets: usize,
) -> Vec<Series> {
    let mut missing = None;
    let mut values: Vec<(String, i64, Vec<Totals>)> = Vec::new();
    for (key, points) in by_key {
        match key {
            None => missing = Some(points),
            Some(key) => {
                let requests = points.iter().map(|p| p.requests).sum();
                values.push((key, requests, points));
            }
        }
    }
    values.sort_by(|a, b| {
        b.1.cmp(&a.1)
            .then_with(|| a.0.as_bytes().cmp(b.0.as_bytes()))
    });
    let rest = values.split_off(top.min(values.len()));
    let mut out: Vec<Series> = values
        .into_iter()
        .map(|(key, _, points)| series(SeriesKey::Value(key), &points))
        .collect();
    if let Some(points) = missing {
        out.push(series(SeriesKey::Missing, &points));
    }
    if !rest.is_empty() {
        let mut other = vec![Totals::default(); buckets];
        for (_, _, points) in &rest {
            for (sum, p) in other.iter_mut().zip(points) {
                sum.add(p);
            }
        }
        out.push(series(SeriesKey::Other, &other));
    }
    out
}

/// The `limit` users with the most of `by`, ties to the name that sorts first (byte
/// order), as the ranking statement orders them.
fn top(users: HashMap<String, Totals>, by: RankBy, limit: usize) -> Vec<(String, Totals)> {
    let metric = |t: &Totals| match by {
        RankBy::Requests => t.requests,
        RankBy::Tokens => t.tokens_in.saturating_add(t.tokens_out),
        RankBy::Cost => t.cost_micros,
    };
    let mut users: Vec<(String, Totals)> =
        users.into_iter().filter(|(_, t)| t.requests > 0).collect();
    users.sort_by(|(a, x), (b, y)| {
        metric(y)
            .cmp(&metric(x))
            .then_with(|| a.as_bytes().cmp(b.as_bytes()))
    });
    users.truncate(limit);
    users
}
