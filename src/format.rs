//! How tocsin writes figures for people: one way everywhere (the status page, its feeds,
//! customer-facing incident updates, chat and pager summaries), so that the same number
//! never reads differently in two places. Machine formats (JSON, metrics) keep raw values.

use std::time::Duration;

/// 900000 → "900 000": digits grouped by three with a narrow no-break space.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 * 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push('\u{202f}');
        }
        out.push(c);
    }
    out
}

/// A share of subscribers: "3.0%", "45%", "<0.1%" (never a misleading "0.0%" for someone
/// affected), "0%" for nobody.
pub fn percent(share: f64) -> String {
    let pct = share * 100.0;
    if share <= 0.0 || !pct.is_finite() {
        "0%".to_string()
    } else if pct < 0.1 {
        "<0.1%".to_string()
    } else if pct < 10.0 {
        format!("{pct:.1}%")
    } else {
        format!("{pct:.0}%")
    }
}

/// An availability ratio: enough decimals to tell 99.996 % from 100 % (a short outage of a
/// small share is still visible), "100%" only when nothing was lost.
pub fn availability(ratio: f64) -> String {
    let pct = (ratio * 100.0).clamp(0.0, 100.0);
    if ratio >= 1.0 {
        "100%".to_string()
    } else if pct >= 99.99 {
        // Never round up to 100: 99.9996 reads 99.9996, not 100.
        let mut digits = 3;
        while digits < 6 && format!("{pct:.digits$}").starts_with("100") {
            digits += 1;
        }
        let text = format!("{:.*}", digits, pct);
        format!("{}%", text.trim_end_matches('0'))
    } else {
        format!("{pct:.2}%")
    }
}

/// "30 s", "2 min", "4 h", "1 h 30 min", "2 d 3 h": whole units, the two largest.
pub fn duration(d: Duration) -> String {
    let s = d.as_secs();
    let (days, h, m) = (s / 86_400, (s % 86_400) / 3600, (s % 3600) / 60);
    match (days, h, m) {
        (0, 0, 0) => format!("{s} s"),
        (0, 0, m) => format!("{m} min"),
        (0, h, 0) => format!("{h} h"),
        (0, h, m) => format!("{h} h {m} min"),
        (d, 0, _) => format!("{d} d"),
        (d, h, _) => format!("{d} d {h} h"),
    }
}

/// A latency: "0.42 ms", "3.1 ms", "180 ms", "2.4 s"; sub-millisecond answers are not
/// "0 ms".
pub fn latency(seconds: f64) -> String {
    let ms = seconds * 1000.0;
    if ms < 1.0 {
        format!("{ms:.2} ms")
    } else if ms < 10.0 {
        format!("{ms:.1} ms")
    } else if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{seconds:.1} s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_group_by_three() {
        assert_eq!(count(900_000), "900\u{202f}000");
        assert_eq!(count(216_000_000), "216\u{202f}000\u{202f}000");
        assert_eq!(count(12), "12");
        assert_eq!(count(0), "0");
    }

    #[test]
    fn shares_never_read_zero_for_someone() {
        assert_eq!(percent(0.03), "3.0%");
        assert_eq!(percent(0.45), "45%");
        assert_eq!(percent(0.000_5), "<0.1%");
        assert_eq!(percent(0.0), "0%");
        assert_eq!(percent(1.0), "100%");
    }

    #[test]
    fn availability_keeps_a_small_loss_visible() {
        // 3 % of subscribers for 2 minutes of a day.
        let day = 1.0 - 0.03 * 2.0 / 1440.0;
        assert_eq!(availability(day), "99.996%");
        assert_eq!(availability(1.0), "100%");
        assert_eq!(availability(0.999_999_9), "99.99999%");
        assert_eq!(availability(0.987_65), "98.77%");
        assert_eq!(availability(0.0), "0.00%");
    }

    #[test]
    fn durations_and_latencies_read_well() {
        assert_eq!(duration(Duration::from_secs(14_400)), "4 h");
        assert_eq!(duration(Duration::from_secs(5_400)), "1 h 30 min");
        assert_eq!(duration(Duration::from_secs(30)), "30 s");
        assert_eq!(duration(Duration::from_secs(120)), "2 min");
        assert_eq!(
            duration(Duration::from_secs(2 * 86_400 + 3 * 3600)),
            "2 d 3 h"
        );
        assert_eq!(latency(0.000_42), "0.42 ms");
        assert_eq!(latency(0.0031), "3.1 ms");
        assert_eq!(latency(0.18), "180 ms");
        assert_eq!(latency(2.4), "2.4 s");
    }
}
