//! Where a cached read cuts its range: at the start of the open tail, and at the start of
//! the UTC day that holds it, so that what changes often is read apart from what does not.

use crate::store::schema::slots::{DAY_US, QUARTER_US};

/// How long after its end a 15-minute slot is taken as closed. Records reach the store
/// when their request ends, and through the recorder's batches, so the slot that just
/// ended still receives some; a slot written after it closed only costs the entries
/// over it a new read (the cache stays exact), this keeps that rare.
pub(crate) const CLOSED_AFTER_US: i64 = 2 * 60_000_000;

/// `[from, to)` cut into at most three pieces, oldest first: the whole UTC days before
/// the one holding the open tail (they change only when a record arrives late), the
/// closed slots of that day (read again when a slot closes), and the open tail from
/// the first slot not closed at `now` (read again after every write into it).
pub(crate) fn pieces(from: i64, to: i64, now: i64) -> Vec<(i64, i64)> {
    let open = now
        .saturating_sub(CLOSED_AFTER_US)
        .div_euclid(QUARTER_US)
        .saturating_mul(QUARTER_US);
    let today = open.div_euclid(DAY_US).saturating_mul(DAY_US);
    let mut pieces = Vec::with_capacity(3);
    let mut at = from;
    for cut in [today, open, to] {
        let end = cut.clamp(at, to);
        if end > at {
            pieces.push((at, end));
            at = end;
        }
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    const Q: i64 = QUARTER_US;
    const D: i64 = DAY_US;

    #[test]
    fn a_range_up_to_now_has_three_pieces() {
        let now = 30 * D + 10 * Q + CLOSED_AFTER_US + 5;
        let pieces = pieces(3 * D + 7, now, now);
        assert_eq!(
            pieces,
            vec![
                (3 * D + 7, 30 * D),
                (30 * D, 30 * D + 10 * Q),
                (30 * D + 10 * Q, now)
            ]
        );
    }

    #[test]
    fn a_past_range_is_one_piece_and_a_future_one_too() {
        let now = 30 * D;
        assert_eq!(pieces(D, 2 * D, now), vec![(D, 2 * D)]);
        assert_eq!(pieces(31 * D, 32 * D, now), vec![(31 * D, 32 * D)]);
        assert!(pieces(5, 5, now).is_empty());
    }

    #[test]
    fn the_pieces_cover_the_range_exactly() {
        let now = 30 * D + 3 * Q + 1;
        for (from, to) in [
            (0, 31 * D),
            (29 * D + 5, 30 * D + 2 * Q),
            (30 * D, 30 * D + 1),
        ] {
            let pieces = pieces(from, to, now);
            assert_eq!(pieces.first().unwrap().0, from);
            assert_eq!(pieces.last().unwrap().1, to);
            assert!(pieces
                .windows(2)
                .all(|w| w[0].1 == w[1].0 && w[0].0 < w[0].1));
        }
    }

    #[test]
    fn the_extremes_do_not_overflow() {
        assert_eq!(pieces(i64::MIN, i64::MAX, i64::MIN).len(), 1);
        assert_eq!(pieces(i64::MIN, i64::MAX, i64::MAX).len(), 3);
    }
}
