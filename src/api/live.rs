//! `GET /live`: server-sent events with the caller's current metrics, sent at once and
//! then at most once a second while records are written; and with them the last hour
//! per minute.
//!
//! The hour is read from raw rows once, when the client connects; after that each
//! event adds what the range's totals gained since the last one to the minute it came
//! in, so a minute counts the records that arrived in it (a record that arrives late
//! counts in the minute it arrived, not the one it started in).
//!
//! A client costs the server little: the time between events grows with what their
//! metrics cost to compute (by default a hundred times it, from one second up to ten; see `ApiConfig::live_share`).
//!
//! Writes through this process's store wake the stream (a watch, which keeps only the
//! latest change: a flood of batches is one wake, and a writer never waits for a
//! client). Writes by other processes are found by asking for the stored records' high
//! water mark every few seconds, one index lookup whatever their number. A slow client
//! holds nothing back: the next event is computed only when the last one was taken, and
//! it carries the totals as they are then. A client that goes away drops the stream and
//! with it everything it held.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::Extension;
use chrono::Utc;
use futures_util::{Stream, StreamExt};
use serde::Serialize;
use tokio::sync::watch;
use tokio::time::Instant;

use super::auth::Role;
use super::guard::Call;
use super::Api;
use crate::query::{Filter, Metrics, Point};
use crate::store::DieselStore;

/// The least time between two events to one client.
const MIN_GAP: Duration = Duration::from_secs(1);
/// The most: however long the metrics take to compute.
const MAX_GAP: Duration = Duration::from_secs(10);
/// How often the stored records' high water mark is read, for other processes' writes.
const POLL: Duration = Duration::from_secs(5);

pub(crate) async fn live(
    State(api): State<Api>,
    Extension(call): Extension<Call>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let mut filter = call.params.filter.clone();
    // A user's stream is about their own records, as `/my-usage` is.
    if call.principal.role != Role::Admin {
        filter.user = Some(call.principal.subject.clone());
    }
    let watch = Watch::new(api.store(), filter, call.params.running, api.0.live_spacing);
    let events = futures_util::stream::unfold(watch, |mut watch| async move {
        let events = watch.next().await;
        Some((
            futures_util::stream::iter(events.into_iter().map(Ok)),
            watch,
        ))
    })
    .flatten();
    Sse::new(events).keep_alive(KeepAlive::default())
}

/// One client's stream: what it selects, and when it last heard.
struct Watch {
    store: DieselStore,
    filter: Filter,
    /// The range ends at each event's moment.
    running: bool,
    written: watch::Receiver<u64>,
    /// The high water mark the last event saw.
    mark: Option<i64>,
    /// When the last event was sent.
    last: Option<Instant>,
    gap: Duration,
    poll: Duration,
    /// The next event waits this many times what the last one cost to compute.
    spacing: u32,
    /// The last hour, per minute, and the totals the last event saw.
    hour: Option<Hour>,
}

/// Sixty minutes of sums, oldest first.
struct Hour {
    /// At most sixty, a minute apart.
    minutes: VecDeque<Minute>,
    seen: Minute,
}

/// The sums of one minute, as the `minutes` event sends them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
struct Minute {
    at: i64,
    requests: u64,
    errors: u64,
    tokens: u64,
    cost_micros: i64,
}

impl Minute {
    fn of(metrics: &Metrics) -> Minute {
        Minute {
            at: 0,
            requests: metrics.requests,
            errors: metrics.errors,
            tokens: metrics.tokens.total,
            cost_micros: metrics.cost_micros,
        }
    }

    fn from_point(at: i64, point: &Point) -> Minute {
        Minute {
            at,
            requests: point.requests,
            errors: point.errors,
            tokens: point.tokens.total,
            cost_micros: point.cost_micros,
        }
    }
}

impl Hour {
    /// Moves the hour up to the minute holding `now`, and adds to that minute what the
    /// totals gained since the last event.
    fn advance(&mut self, now: i64, totals: Minute) {
        let current = now.div_euclid(60_000_000) * 60;
        let last = self.minutes.back().map_or(current - 60, |m| m.at);
        // After a pause longer than the hour, only its last sixty minutes are made.
        for at in ((last + 60).max(current - 59 * 60)..=current).step_by(60) {
            self.minutes.push_back(Minute {
                at,
                ..Minute::default()
            });
        }
        while self.minutes.len() > 60 {
            self.minutes.pop_front();
        }
        if let Some(minute) = self.minutes.back_mut() {
            minute.requests += totals.requests.saturating_sub(self.seen.requests);
            minute.errors += totals.errors.saturating_sub(self.seen.errors);
            minute.tokens += totals.tokens.saturating_sub(self.seen.tokens);
            minute.cost_micros += (totals.cost_micros - self.seen.cost_micros).max(0);
        }
        self.seen = totals;
    }
}

impl Watch {
    fn new(store: &DieselStore, filter: Filter, running: bool, spacing: u32) -> Watch {
        Watch {
            store: store.clone(),
            filter,
            running,
            written: store.written(),
            mark: None,
            last: None,
            gap: MIN_GAP,
            poll: POLL,
            spacing,
            hour: None,
        }
    }

    /// The next events (the metrics, then the hour): at once for the first, then after
    /// the next write (here or elsewhere), and never sooner than `gap` after the last.
    async fn next(&mut self) -> Vec<Event> {
        if let Some(last) = self.last {
            self.wait_for_a_write().await;
            tokio::time::sleep_until(last + self.gap).await;
        }
        // Whatever was written while waiting is in this event.
        self.written.mark_unchanged();
        self.mark = self.store.high_water_mark().await.ok();
        let started = Instant::now();
        self.last = Some(started);
        let metrics = self.metrics().await;
        self.gap = (started.elapsed() * self.spacing).clamp(MIN_GAP, MAX_GAP);
        let metrics = match metrics {
            Ok(metrics) => metrics,
            Err(message) => return vec![Event::default().event("error").data(message)],
        };
        let now = Utc::now();
        if self.hour.is_none() {
            // Only a running range's totals move with the records arriving now.
            let read = self.store.last_hour_by_minute(&self.filter, now).await;
            self.hour = read.ok().map(|(first, points)| Hour {
                minutes: points
                    .iter()
                    .enumerate()
                    .map(|(i, p)| Minute::from_point((first + i as i64) * 60, p))
                    .collect(),
                seen: Minute::of(&metrics),
            });
        }
        let mut events = vec![json_event("metrics", &metrics)];
        if let Some(hour) = self.hour.as_mut() {
            hour.advance(now.timestamp_micros(), Minute::of(&metrics));
            events.push(json_event("minutes", &hour.minutes));
        }
        events
    }

    async fn wait_for_a_write(&mut self) {
        loop {
            tokio::select! {
                // Never an error: this watch holds the store, and so the sender.
                _ = self.written.changed() => return,
                () = tokio::time::sleep(self.poll) => {
                    let mark = self.store.high_water_mark().await.ok();
                    if mark.is_some() && mark != self.mark {
                        return;
                    }
                }
            }
        }
    }

    async fn metrics(&self) -> Result<Metrics, String> {
        let mut filter = self.filter.clone();
        if self.running {
            filter.range.to = filter.range.to.max(Utc::now());
        }
        self.store
            .metrics(&filter)
            .await
            .map_err(|e| format!("the store failed: {e}"))
    }
}

fn json_event(name: &str, data: &impl Serialize) -> Event {
    Event::default()
        .event(name)
        .json_data(data)
        .unwrap_or_else(|_| Event::default().event("error").data("not serializable"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    use crate::query::TimeRange;
    use crate::{UsageRecord, UsageSink};

    async fn watch(store: &DieselStore) -> Watch {
        Watch::new(store, Filter::new(TimeRange::last_hours(1)), true, 100)
    }

    #[tokio::test(start_paused = true)]
    async fn a_flood_of_batches_gives_one_event_a_second() {
        let store = DieselStore::connect("sqlite::memory:").await.unwrap();
        let mut client = watch(&store).await;
        let _first = client.next().await;
        let started = Instant::now();
        let writer = {
            let store = store.clone();
            tokio::spawn(async move {
                for _ in 0..50 {
                    store
                        .write_batch(&[UsageRecord::builder().build()])
                        .await
                        .unwrap();
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        };
        let events = Arc::new(AtomicU32::new(0));
        let counter = {
            let events = Arc::clone(&events);
            tokio::spawn(async move {
                loop {
                    let _event = client.next().await;
                    events.fetch_add(1, Ordering::SeqCst);
                }
            })
        };
        writer.await.unwrap();
        // Time for the last writes' event to go out.
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        counter.abort();
        let events = events.load(Ordering::SeqCst);
        let seconds = started.elapsed().as_secs_f64();
        // 50 batches over about a second: about one event a second, never one a batch.
        assert!(
            events <= seconds.ceil() as u32 + 1,
            "{events} events in {seconds} s"
        );
        assert!(events >= 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_client_wakes_for_a_write_and_a_gone_one_frees_its_watch() {
        let store = DieselStore::connect("sqlite::memory:").await.unwrap();
        let mut client = watch(&store).await;
        let _first = client.next().await;
        let next = tokio::spawn(async move {
            let _event = client.next().await;
            client
        });
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(!next.is_finished(), "an event without a write");
        store
            .write_batch(&[UsageRecord::builder().build()])
            .await
            .unwrap();
        let client = next.await.unwrap();
        assert_eq!(store.written_watchers(), 1);
        drop(client);
        assert_eq!(store.written_watchers(), 0);
    }

    /// A client that stops taking events holds no writer back (the writes finish while
    /// it sleeps) and is never behind: its next event carries every record written
    /// meanwhile, so there is no backlog to lose or to catch up on.
    #[tokio::test]
    async fn a_client_that_stops_reading_holds_no_writer_back_and_misses_nothing() {
        let store = DieselStore::connect("sqlite::memory:").await.unwrap();
        let mut client = watch(&store).await;
        client.gap = Duration::ZERO;
        let _first = client.next().await;
        let batches = tokio::time::timeout(Duration::from_secs(60), async {
            for _ in 0..200 {
                let batch = [
                    UsageRecord::builder().build(),
                    UsageRecord::builder().build(),
                ];
                store.write_batch(&batch).await.unwrap();
            }
        });
        batches
            .await
            .expect("a writer waited for a client that does not read");
        let events = client.next().await;
        assert_eq!(events.len(), 2);
        let hour = client.hour.as_ref().unwrap();
        assert_eq!(hour.seen.requests, 400);
        assert_eq!(hour.minutes.iter().map(|m| m.requests).sum::<u64>(), 400);
    }

    #[tokio::test]
    async fn the_hour_counts_what_arrives_in_its_last_minute() {
        let store = DieselStore::connect("sqlite::memory:").await.unwrap();
        let mut early = UsageRecord::builder().build();
        early.started_at -= chrono::Duration::minutes(30);
        store.write_batch(&[early]).await.unwrap();
        let mut client = watch(&store).await;
        client.gap = Duration::ZERO;
        let _first = client.next().await;
        let hour = client.hour.as_ref().unwrap();
        assert_eq!(hour.minutes.len(), 60);
        assert_eq!(hour.minutes.iter().map(|m| m.requests).sum::<u64>(), 1);
        let last_before = hour.minutes[59].requests;
        store
            .write_batch(&[
                UsageRecord::builder().build(),
                UsageRecord::builder().build(),
            ])
            .await
            .unwrap();
        let events = client.next().await;
        assert_eq!(events.len(), 2);
        let hour = client.hour.as_ref().unwrap();
        assert_eq!(hour.minutes.iter().map(|m| m.requests).sum::<u64>(), 3);
        // Both new records in the minute they arrived, unless the minute turned.
        assert!(hour.minutes[59].requests == last_before + 2 || hour.minutes[59].requests == 2);
    }

    #[test]
    fn after_a_pause_longer_than_the_hour_only_its_last_sixty_minutes_are_kept() {
        let minute = |at| Minute {
            at,
            requests: 1,
            ..Minute::default()
        };
        let mut hour = Hour {
            minutes: (0..60).map(|i| minute(i * 60)).collect(),
            seen: Minute::default(),
        };
        let now = 3 * 3_600 * 1_000_000 + 30_000_000;
        hour.advance(
            now,
            Minute {
                requests: 4,
                ..Minute::default()
            },
        );
        assert_eq!(hour.minutes.len(), 60);
        assert_eq!(hour.minutes.back().unwrap().at, 3 * 3_600);
        assert_eq!(hour.minutes.front().unwrap().at, 3 * 3_600 - 59 * 60);
        let counts: Vec<u64> = hour.minutes.iter().map(|m| m.requests).collect();
        assert_eq!(counts.iter().sum::<u64>(), 4, "{counts:?}");
        assert_eq!(hour.minutes.back().unwrap().requests, 4);
    }
}
