//! The console's charts: what `/metrics` exports, sampled every [`EVERY`] and kept for the
//! last hour in memory (records, dead letters and retries per second, handler latency p50 and
//! p99), and the consumer lag per partition read from the same exposition.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Value, json};

/// How often a sample is taken.
pub(crate) const EVERY: Duration = Duration::from_secs(5);
/// Samples kept: one hour.
const KEPT: usize = 720;

const RECEIVED: &str = "ordering_records_received_total";
const DEAD_LETTERED: &str = "ordering_records_dead_lettered_total";
const RETRIED: &str = "ordering_records_retried_total";
const HANDLER_BUCKETS: &str = "ordering_handler_duration_seconds_bucket";
const LAG: &str = "kafka_consumer_lag";

/// The counters at one instant.
#[derive(Debug, Clone, Default, PartialEq)]
struct Sample {
    /// Seconds since the Unix epoch.
    at: f64,
    received: f64,
    dead_lettered: f64,
    retried: f64,
    /// Handler calls at or under each bucket bound (seconds), summed over label sets.
    latency: Vec<(f64, f64)>,
}

/// The last hour of samples.
#[derive(Debug, Default)]
pub(crate) struct Series(Mutex<VecDeque<Sample>>);

impl Series {
    /// Takes a sample of `exposition` (the text `/metrics` serves) taken at `at` (seconds
    /// since the Unix epoch), dropping the oldest beyond an hour.
    pub(crate) fn sample(&self, exposition: &str, at: f64) {
        let mut sample = Sample {
            at,
            ..Sample::default()
        };
        let mut buckets: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
        for (name, labels, value) in exposition.lines().filter_map(parse) {
            match name {
                RECEIVED => sample.received += value,
                DEAD_LETTERED => sample.dead_lettered += value,
                RETRIED => sample.retried += value,
                HANDLER_BUCKETS => {
                    let le = label(labels, "le").and_then(|le| match le {
                        "+Inf" => Some(f64::INFINITY),
                        le => le.parse::<f64>().ok(),
                    });
                    if let Some(le) = le {
                        buckets.entry(le.to_bits()).or_insert((le, 0.0)).1 += value;
                    }
                }
                _ => {}
            }
        }
        sample.latency = buckets.into_values().collect();
        sample
            .latency
            .sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
        let mut samples = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if samples.len() == KEPT {
            samples.pop_front();
        }
        samples.push_back(sample);
    }

    /// The charts' data: per interval between two samples, its end time and rates; `null`
    /// latency where no handler call ended in it.
    pub(crate) fn json(&self) -> Value {
        let samples = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let (mut t, mut records, mut dead, mut retries, mut p50, mut p99) =
            (vec![], vec![], vec![], vec![], vec![], vec![]);
        for (before, after) in samples.iter().zip(samples.iter().skip(1)) {
            let seconds = after.at - before.at;
            if seconds <= 0.0 {
                continue;
            }
            let rate = |f: fn(&Sample) -> f64| (f(after) - f(before)).max(0.0) / seconds;
            t.push(after.at.round());
            records.push(rate(|s| s.received));
            dead.push(rate(|s| s.dead_lettered));
            retries.push(rate(|s| s.retried));
            let calls = interval_buckets(before, after);
            p50.push(quantile(&calls, 0.5).map(|s| s * 1000.0));
            p99.push(quantile(&calls, 0.99).map(|s| s * 1000.0));
        }
        json!({
            "intervalSeconds": EVERY.as_secs(),
            "t": t,
            "recordsPerSecond": records,
            "deadLettersPerSecond": dead,
            "retriesPerSecond": retries,
            "handlerP50Ms": p50,
            "handlerP99Ms": p99,
        })
    }
}

/// The cumulative bucket counts of the calls that ended between two samples.
fn interval_buckets(before: &Sample, after: &Sample) -> Vec<(f64, f64)> {
    after
        .latency
        .iter()
        .map(|&(le, count)| {
            let earlier = before
                .latency
                .iter()
                .find(|(l, _)| *l == le)
                .map_or(0.0, |(_, c)| *c);
            (le, (count - earlier).max(0.0))
        })
        .collect()
}

/// The `q` quantile of cumulative buckets, interpolated within its bucket as Prometheus's
/// `histogram_quantile` does; `None` without calls.
fn quantile(buckets: &[(f64, f64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut below = (0.0, 0.0);
    for &(le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                // Beyond the last bound: the last bound is all that is known.
                return Some(below.0);
            }
            let within = count - below.1;
            let share = if within > 0.0 {
                (rank - below.1) / within
            } else {
                1.0
            };
            return Some(below.0 + (le - below.0) * share);
        }
        below = (le, count);
    }
    Some(below.0)
}

/// The lag of each of `partitions` (`topic/partition`) of `group`, from `exposition`; a
/// partition the consumer has not reported yet is left out.
pub(crate) fn lag(exposition: &str, group: &str, partitions: &[(String, i32)]) -> Vec<Value> {
    let mut lag: Vec<(String, i32, f64)> = exposition
        .lines()
        .filter_map(parse)
        .filter(|(name, labels, _)| *name == LAG && label(labels, "group") == Some(group))
        .filter_map(|(_, labels, value)| {
            let topic = label(labels, "topic")?;
            let partition = label(labels, "partition")?.parse::<i32>().ok()?;
            partitions
                .iter()
                .any(|(t, p)| t == topic && *p == partition)
                .then(|| (topic.to_owned(), partition, value))
        })
        .collect();
    lag.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    lag.into_iter()
        .map(|(topic, partition, lag)| json!({"topic": topic, "partition": partition, "lag": lag}))
        .collect()
}

/// One sample line of the text exposition: name, labels (without braces), value.
fn parse(line: &str) -> Option<(&str, &str, f64)> {
    if line.starts_with('#') {
        return None;
    }
    let (series, value) = line.rsplit_once(' ')?;
    let value = value.parse::<f64>().ok()?;
    match series.split_once('{') {
        Some((name, labels)) => Some((name, labels.strip_suffix('}')?, value)),
        None => Some((series, "", value)),
    }
}

/// A label's value (the exporter escapes no character our label values hold).
fn label<'a>(labels: &'a str, key: &str) -> Option<&'a str> {
    labels.split("\",").find_map(|pair| {
        let (name, value) = pair.split_once("=\"")?;
        (name.trim_start_matches(',') == key).then(|| value.trim_end_matches('"'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exposition(received: u32, buckets: [u32; 3]) -> String {
        format!(
            "# TYPE ordering_records_received_total counter\n\
             ordering_records_received_total{{group=\"g\"}} {received}\n\
             ordering_records_dead_lettered_total{{group=\"g\"}} 1\n\
             ordering_handler_duration_seconds_bucket{{group=\"g\",result=\"ok\",le=\"0.01\"}} {}\n\
             ordering_handler_duration_seconds_bucket{{group=\"g\",result=\"ok\",le=\"0.1\"}} {}\n\
             ordering_handler_duration_seconds_bucket{{group=\"g\",result=\"ok\",le=\"+Inf\"}} {}\n\
             kafka_consumer_lag{{group=\"g\",topic=\"t\",partition=\"0\"}} 7\n\
             kafka_consumer_lag{{group=\"g\",topic=\"t\",partition=\"1\"}} 9\n\
             kafka_consumer_lag{{group=\"other\",topic=\"t\",partition=\"0\"}} 3\n",
            buckets[0], buckets[1], buckets[2]
        )
    }

    #[test]
    fn rates_and_quantiles_come_from_the_differences_between_samples() {
        let series = Series::default();
        series.sample(&exposition(100, [10, 10, 10]), 1000.0);
        series.sample(&exposition(150, [10, 10, 10]), 1005.0);
        // 100 calls: 50 under 10 ms, 48 more under 100 ms, 2 beyond.
        series.sample(&exposition(250, [60, 108, 110]), 1010.0);
        let json = series.json();
        assert_eq!(json["t"], json!([1005.0, 1010.0]));
        assert_eq!(json["recordsPerSecond"], json!([10.0, 20.0]));
        assert_eq!(json["deadLettersPerSecond"], json!([0.0, 0.0]));
        assert_eq!(json["handlerP50Ms"][0], Value::Null, "no calls, no latency");
        let p50 = json["handlerP50Ms"][1].as_f64().unwrap();
        assert!((p50 - 10.0).abs() < 1e-9, "{p50}");
        assert_eq!(
            json["handlerP99Ms"][1],
            json!(100.0),
            "beyond the last bound"
        );
    }

    #[test]
    fn an_hour_is_kept() {
        let series = Series::default();
        for n in 0..KEPT + 10 {
            series.sample(&exposition(0, [0; 3]), n as f64);
        }
        assert_eq!(series.json()["t"].as_array().unwrap().len(), KEPT - 1);
    }

    #[test]
    fn lag_is_read_for_the_partitions_held() {
        let held = [("t".to_owned(), 1)];
        let lag = lag(&exposition(0, [0; 3]), "g", &held);
        assert_eq!(lag, [json!({"topic": "t", "partition": 1, "lag": 9.0})]);
    }

    #[test]
    fn quantiles_interpolate_within_a_bucket() {
        let buckets = [(0.1, 0.0), (0.2, 100.0), (f64::INFINITY, 100.0)];
        let p50 = quantile(&buckets, 0.5).unwrap();
        assert!((p50 - 0.15).abs() < 1e-9, "{p50}");
        assert_eq!(quantile(&[(0.1, 0.0), (f64::INFINITY, 0.0)], 0.5), None);
    }
}
