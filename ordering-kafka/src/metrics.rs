//! The transport's metrics, through the `metrics` facade (see `ordering-core`'s stats): what
//! publishing costs, consumer lag, redrives.

use std::sync::Once;
use std::time::Duration;

use metrics::Unit;
use rdkafka::statistics::Statistics;

/// How often librdkafka reports its statistics, consumer lag among them.
pub(crate) const STATISTICS_INTERVAL_MS: &str = "5000";

/// Says what each metric means, once per process (for `# HELP` lines).
pub(crate) fn describe() {
    static DESCRIBED: Once = Once::new();
    DESCRIBED.call_once(|| {
        use metrics::{describe_counter, describe_gauge, describe_histogram};
        describe_histogram!(
            "kafka_publish_duration_seconds",
            Unit::Seconds,
            "Time from a publish to the broker's acknowledgement (acks=all), by topic"
        );
        describe_counter!(
            "kafka_publish_failures_total",
            "Publishes that failed (not acknowledged in time, or refused), by topic"
        );
        describe_gauge!(
            "kafka_consumer_lag",
            "Records behind the end of each assigned partition, from librdkafka's statistics"
        );
        describe_counter!(
            "ordering_dlq_redrive_letters_total",
            "Dead letters a redrive matched, by outcome (republished, skipped, failed)"
        );
    });
}

/// One publish to `topic` took `elapsed`; `ok` if the broker acknowledged it.
pub(crate) fn published(topic: &str, elapsed: Duration, ok: bool) {
    let topic = topic.to_owned();
    metrics::histogram!("kafka_publish_duration_seconds", "topic" => topic.clone()).record(elapsed);
    if !ok {
        metrics::counter!("kafka_publish_failures_total", "topic" => topic).increment(1);
    }
}

/// A redrive ended for one letter with `outcome`.
pub(crate) fn redriven(outcome: &'static str) {
    metrics::counter!("ordering_dlq_redrive_letters_total", "outcome" => outcome).increment(1);
}

/// Consumer lag per partition, from one statistics report of a consumer of `group`. A
/// partition whose lag librdkafka does not know (not assigned, not fetched yet) reads 0.
pub(crate) fn consumer_lag(group: &str, statistics: &Statistics) {
    for (name, topic) in &statistics.topics {
        for (id, partition) in &topic.partitions {
            if *id < 0 {
                continue; // librdkafka's internal "unassigned" partition
            }
            metrics::gauge!(
                "kafka_consumer_lag",
                "group" => group.to_owned(), "topic" => name.clone(), "partition" => id.to_string()
            )
            .set(partition.consumer_lag.max(0) as f64);
        }
    }
}
