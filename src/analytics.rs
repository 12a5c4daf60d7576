//! Pure analytics: turns rollup rows into the analytics responses of the contract.
//! No I/O and no clock: the current time is passed in, so every number is testable.
//!
//! Definitions (the contract names the fields; these are what they mean here):
//! - `totalClicks`: redirects plus successful verifies.
//! - `topRegion` / `topDevice`: the region / device class with the most clicks (`null` if none).
//! - `avgLatency`: mean server-side redirect time in milliseconds, two decimals.
//! - `conversionRate`: percent of visits that reached the target: clicks / (clicks + gated
//!   visits), where a gated visit got the password form or the per-link cap instead; one decimal.

use std::collections::HashMap;

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use serde::Serialize;

use crate::store::{DailyRegionTotal, RegionDeviceTotal};

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub total_clicks: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_links: Option<i64>,
    pub top_region: Option<String>,
    pub top_device: Option<String>,
    pub avg_latency: f64,
    pub conversion_rate: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DayPoint {
    pub timestamp: String,
    pub clicks: i64,
    pub region: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RegionShare {
    pub region: String,
    pub clicks: i64,
    pub percentage: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WeekdayPoint {
    pub day: String,
    pub clicks: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trend {
    pub clicks: f64,
    pub active: f64,
}

/// Summary numbers over all-time totals.
pub fn summarize(totals: &[RegionDeviceTotal], total_links: Option<i64>) -> Summary {
    let clicks: i64 = totals.iter().map(|t| t.clicks).sum();
    let gated: i64 = totals.iter().map(|t| t.gated).sum();
    let latency_us: i64 = totals.iter().map(|t| t.latency_us_sum).sum();
    let by_region = sum_by(totals.iter().map(|t| (t.region.as_str(), t.clicks)));
    let by_device = sum_by(totals.iter().map(|t| (t.device_class.as_str(), t.clicks)));
    Summary {
        total_clicks: clicks,
        total_links,
        top_region: top_of(&by_region),
        top_device: top_of(&by_device),
        avg_latency: if clicks > 0 {
            round_to(latency_us as f64 / clicks as f64 / 1000.0, 2)
        } else {
            0.0
        },
        conversion_rate: if clicks + gated > 0 {
            round_to(clicks as f64 * 100.0 / (clicks + gated) as f64, 1)
        } else {
            0.0
        },
    }
}

/// Regions by clicks, descending, with their share as a one-decimal string.
pub fn top_regions(totals: &[RegionDeviceTotal], limit: usize) -> Vec<RegionShare> {
    let total: i64 = totals.iter().map(|t| t.clicks).sum();
    let mut regions: Vec<(String, i64)> =
        sum_by(totals.iter().map(|t| (t.region.as_str(), t.clicks)))
            .into_iter()
            .filter(|(_, c)| *c > 0)
            .map(|(r, c)| (r.to_string(), c))
            .collect();
    regions.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    regions
        .into_iter()
        .take(limit)
        .map(|(region, clicks)| RegionShare {
            percentage: format!(
                "{:.1}",
                if total > 0 {
                    clicks as f64 * 100.0 / total as f64
                } else {
                    0.0
                }
            ),
            region,
            clicks,
        })
        .collect()
}

/// One point per day that had clicks (`zero_fill_from`: `Some(first day)` to emit every day
/// from there to `today` including zeros). `region` is that day's top region.
pub fn daily_points(
    daily: &[DailyRegionTotal],
    zero_fill_from: Option<NaiveDate>,
    today: NaiveDate,
) -> Vec<DayPoint> {
    let mut per_day: HashMap<NaiveDate, Vec<(&str, i64)>> = HashMap::new();
    for row in daily {
        per_day
            .entry(row.day)
            .or_default()
            .push((row.region.as_str(), row.clicks));
    }
    let days: Vec<NaiveDate> = match zero_fill_from {
        Some(first) => first.iter_days().take_while(|d| *d <= today).collect(),
        None => {
            let mut d: Vec<NaiveDate> = per_day.keys().copied().collect();
            d.sort();
            d
        }
    };
    days.into_iter()
        .map(|day| {
            let regions = per_day.get(&day).map(Vec::as_slice).unwrap_or(&[]);
            let by_region = sum_by(regions.iter().copied());
            DayPoint {
                timestamp: day.format("%Y-%m-%d").to_string(),
                clicks: regions.iter().map(|(_, c)| c).sum(),
                region: top_of(&by_region),
            }
        })
        .collect()
}

/// The last 7 days (today included) as weekday names with zero-filled click counts.
pub fn weekday_points(daily: &[DailyRegionTotal], today: NaiveDate) -> Vec<WeekdayPoint> {
    let first = today - Duration::days(6);
    daily_points(daily, Some(first), today)
        .into_iter()
        .zip(first.iter_days())
        .map(|(p, day)| WeekdayPoint {
            day: day.weekday().to_string(),
            clicks: p.clicks,
        })
        .collect()
}

/// Percent change from `previous` to `current`, one decimal; 100 when growing from zero.
pub fn percent_change(previous: i64, current: i64) -> f64 {
    if previous == 0 {
        if current == 0 {
            0.0
        } else {
            100.0
        }
    } else {
        round_to((current - previous) as f64 * 100.0 / previous as f64, 1)
    }
}

/// Start of the UTC day `days_back` days before `now`'s day.
pub fn day_start(now: DateTime<Utc>, days_back: i64) -> DateTime<Utc> {
    let day = now.date_naive() - Duration::days(days_back);
    day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc()
}

fn sum_by<'a>(items: impl Iterator<Item = (&'a str, i64)>) -> HashMap<&'a str, i64> {
    let mut map = HashMap::new();
    for (k, v) in items {
        *map.entry(k).or_insert(0) += v;
    }
    map
}

fn top_of(map: &HashMap<&str, i64>) -> Option<String> {
    map.iter()
        .filter(|(_, c)| **c > 0)
        // Highest count; ties broken by name so the answer is stable.
        .max_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0)))
        .map(|(k, _)| k.to_string())
}

fn round_to(v: f64, decimals: i32) -> f64 {
    let f = 10f64.powi(decimals);
    (v * f).round() / f
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(region: &str, device: &str, clicks: i64, gated: i64, lat: i64) -> RegionDeviceTotal {
        RegionDeviceTotal {
            region: region.into(),
            device_class: device.into(),
            clicks,
            gated,
            latency_us_sum: lat,
        }
    }

    fn d(day: &str, region: &str, clicks: i64) -> DailyRegionTotal {
        DailyRegionTotal {
            day: day.parse().expect("date"),
            region: region.into(),
            clicks,
        }
    }

    #[test]
    fn summary_of_nothing_is_all_zero_and_null() {
        let s = summarize(&[], Some(0));
        assert_eq!(s.total_clicks, 0);
        assert_eq!(s.top_region, None);
        assert_eq!(s.top_device, None);
        assert_eq!(s.avg_latency, 0.0);
        assert_eq!(s.conversion_rate, 0.0);
    }

    #[test]
    fn summary_picks_top_region_and_device_and_computes_means() {
        let rows = [
            t("US", "desktop", 6, 0, 6_000),
            t("DE", "mobile", 3, 1, 3_000),
            t("DE", "desktop", 1, 0, 1_500),
        ];
        let s = summarize(&rows, None);
        assert_eq!(s.total_clicks, 10);
        assert_eq!(s.top_region.as_deref(), Some("US"));
        assert_eq!(s.top_device.as_deref(), Some("desktop"));
        assert_eq!(s.avg_latency, 1.05);
        assert_eq!(s.conversion_rate, 90.9);
    }

    #[test]
    fn top_regions_are_sorted_with_percentages() {
        let rows = [
            t("US", "desktop", 3, 0, 0),
            t("DE", "mobile", 1, 0, 0),
            t("FR", "mobile", 0, 2, 0),
        ];
        let r = top_regions(&rows, 5);
        assert_eq!(r.len(), 2);
        assert_eq!(
            (r[0].region.as_str(), r[0].clicks, r[0].percentage.as_str()),
            ("US", 3, "75.0")
        );
        assert_eq!(
            (r[1].region.as_str(), r[1].percentage.as_str()),
            ("DE", "25.0")
        );
    }

    #[test]
    fn daily_points_zero_fill_every_day_when_asked() {
        let today: NaiveDate = "2026-11-23".parse().expect("date");
        let rows = [
            d("2026-11-21", "US", 2),
            d("2026-11-21", "DE", 5),
            d("2026-11-23", "US", 1),
        ];
        let p = daily_points(&rows, Some(today - Duration::days(6)), today);
        assert_eq!(p.len(), 7);
        assert_eq!(p[0].timestamp, "2026-11-17");
        assert_eq!(p[4].clicks, 7);
        assert_eq!(p[4].region.as_deref(), Some("DE"));
        assert_eq!(p[5].clicks, 0);
        assert_eq!(p[5].region, None);
        let sparse = daily_points(&rows, None, today);
        assert_eq!(sparse.len(), 2);
    }

    #[test]
    fn weekday_points_name_the_days() {
        let today: NaiveDate = "2026-11-23".parse().expect("date"); // a Monday
        let p = weekday_points(&[d("2026-11-23", "US", 4)], today);
        assert_eq!(p.len(), 7);
        assert_eq!(p[6].day, "Mon");
        assert_eq!(p[6].clicks, 4);
        assert_eq!(p[0].day, "Tue");
    }

    #[test]
    fn percent_change_handles_zero_baselines() {
        assert_eq!(percent_change(0, 0), 0.0);
        assert_eq!(percent_change(0, 5), 100.0);
        assert_eq!(percent_change(10, 15), 50.0);
        assert_eq!(percent_change(10, 5), -50.0);
    }
}
