//! The stored form of a latency histogram, in the dimension rollups' `latency_hist` and
//! `ttfb_hist` columns: a storage format of its own, apart from the backend-free
//! [`Histogram`] it holds.
//!
//! Version 1 (the only one): `bucket:count` pairs in bucket order, joined by commas;
//! no pairs for an empty histogram. A bucket is a `u16` and a count a non-negative
//! `i64`, both in decimal. Readers refuse anything else. Changing the form means a new
//! version: a migration that rewrites every stored histogram, and a new [`VERSION`].
//! Rust encodes and decodes it here, and PostgreSQL merges two stored histograms in
//! SQL with [`merged_sql`]; the three must agree (the conformance suite checks merges
//! on every backend against a computation from the records).

use crate::query::Histogram;

/// The version of the stored form described above.
#[allow(dead_code)] // Documentation for the next version's migration.
pub(crate) const VERSION: u32 = 1;

/// `histogram` in the stored form.
pub(crate) fn encode(histogram: &Histogram) -> String {
    let mut out = String::new();
    for (i, (b, n)) in histogram.counts().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&b.to_string());
        out.push(':');
        out.push_str(&n.to_string());
    }
    out
}

/// Reads the stored form; `None` for text that is not in it.
pub(crate) fn decode(text: &str) -> Option<Histogram> {
    let mut histogram = Histogram::default();
    merge_into(&mut histogram, text)?;
    Some(histogram)
}

/// Adds the counts of a stored histogram to `histogram`, without building one of them
/// first (a dashboard merges thousands). `None` for text that is not in the stored
/// form; `histogram` may then hold part of it.
pub(crate) fn merge_into(histogram: &mut Histogram, text: &str) -> Option<()> {
    for pair in text.split(',').filter(|p| !p.is_empty()) {
        let (b, n) = pair.split_once(':')?;
        let (b, n): (u16, i64) = (b.parse().ok()?, n.parse().ok()?);
        if n < 0 {
            return None;
        }
        histogram.add_bucket(b, n);
    }
    Some(())
}

/// PostgreSQL's merge of the stored histograms `a` and `b` (SQL expressions), in the
/// stored form: the same as [`decode`], [`Histogram::merge`] and [`encode`] (counts
/// saturate). Text that is not in the stored form stops the statement with an error
/// naming it, as [`decode`] refuses it.
pub(crate) fn merged_sql(a: &str, b: &str) -> String {
    let pair = "'^[0-9]{1,5}:[0-9]{1,19}$'";
    let part = |n: u8| {
        format!("CAST(CASE WHEN p ~ {pair} THEN split_part(p, ':', {n}) ELSE 'unreadable histogram ' || p END AS NUMERIC)")
    };
    format!(
        "(SELECT COALESCE(string_agg(CAST(b AS TEXT) || ':' || CAST(n AS TEXT), ',' ORDER BY b), '') \
         FROM (SELECT {} AS b, CAST(LEAST(SUM({}), {}) AS BIGINT) AS n \
         FROM unnest(string_to_array({a} || ',' || {b}, ',')) AS p WHERE p <> '' GROUP BY 1) AS h)",
        part(1),
        part(2),
        i64::MAX
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stored_form_round_trips_and_refuses_garbage() {
        let mut h = Histogram::default();
        h.add(0, 2);
        h.add(123_456, 7);
        assert_eq!(
            encode(&h),
            format!("0:2,{}:7", crate::query::bucket(123_456))
        );
        assert_eq!(decode(&encode(&h)), Some(h));
        assert_eq!(decode(""), Some(Histogram::default()));
        for bad in ["x:1", "3:-1", "3:99999999999999999999", "70000:1", "3"] {
            assert_eq!(decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn counts_past_the_largest_saturate() {
        let h = decode(&format!("1:{},1:{}", i64::MAX, i64::MAX)).unwrap();
        assert_eq!(h.total(), i64::MAX);
    }
}
