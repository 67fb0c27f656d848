//! Kafka transport for `ordering-core`: filled in by the ordering-kafka issue.
