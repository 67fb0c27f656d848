//! Kafka errors, classified once: everything else asks `is_retryable`.

use rdkafka::error::{KafkaError as RdError, RDKafkaErrorCode as Code};

use ordering_core::SinkError;

/// A Kafka operation that failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KafkaError {
    /// The client could not be configured (bad bootstrap address format, unknown property).
    #[error("invalid Kafka configuration: {0}")]
    Config(String),
    /// A message could not be encoded for the wire.
    #[error("cannot encode message: {0}")]
    Encode(String),
    /// An operation did not finish in time.
    #[error("{operation} timed out after {after:?}")]
    Timeout {
        /// What timed out, e.g. `"reading a topic"`.
        operation: &'static str,
        /// How long it was given.
        after: std::time::Duration,
    },
    /// Every one of the producer's `max_in_flight` publishes was still under way for as long
    /// as a publish may wait for its turn: more is asked than the broker acknowledges. Nothing
    /// was sent.
    #[error("overloaded: all {max_in_flight} publishes still under way after {waited:?}")]
    Overloaded {
        /// The producer's bound on publishes under way ([`crate::ProducerConfig::max_in_flight`]).
        max_in_flight: usize,
        /// How long the publish waited for a slot before giving up.
        waited: std::time::Duration,
    },
    /// The brokers refuse this client for a reason a person fixes (a wrong password, an
    /// untrusted certificate, the wrong protocol): retryable, as an outage is (the record is
    /// not at fault), and reported as such by a health check and at start-up.
    #[error("cannot connect to Kafka: {0}")]
    Connect(crate::ConnectFailure),
    /// librdkafka reported an error; whether it is worth retrying depends on its code
    /// ([`KafkaError::is_retryable`]).
    #[error("{operation} failed: {source}")]
    Client {
        /// What failed, e.g. `"publishing"` or `"creating topics"`.
        operation: &'static str,
        /// librdkafka's error.
        #[source]
        source: RdError,
    },
}

impl KafkaError {
    pub(crate) fn client(operation: &'static str) -> impl FnOnce(RdError) -> Self {
        move |source| match source {
            // librdkafka's description and the property's name; never its value, which may
            // be a password.
            RdError::ClientConfig(_, description, key, _) => {
                Self::Config(format!("{key}: {description}"))
            }
            source => Self::Client { operation, source },
        }
    }

    /// Worth trying again later: the broker is down, slow or electing a leader, or refuses
    /// the login or the certificates (a person fixes it; the record is not at fault). Not
    /// worth it: bad configuration, a message the broker refuses, missing authorisation.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Config(_) | Self::Encode(_) => false,
            Self::Timeout { .. } | Self::Overloaded { .. } | Self::Connect(_) => true,
            Self::Client { source, .. } => is_retryable(source),
        }
    }
}

/// The one place that decides which rdkafka errors are transient.
pub(crate) fn is_retryable(error: &RdError) -> bool {
    if matches!(
        error,
        RdError::MessageConsumptionFatal(_) | RdError::ClientConfig(..)
    ) {
        return false;
    }
    // rdkafka gives no code for a failed admin operation's result: take it from the variant.
    let code = match error {
        RdError::AdminOp(code) => Some(*code),
        other => other.rdkafka_error_code(),
    };
    match code {
        None => !matches!(error, RdError::Nul(_) | RdError::ClientCreation(_)),
        Some(code) => is_retryable_code(code),
    }
}

fn is_retryable_code(code: Code) -> bool {
    !matches!(
        code,
        Code::MessageSizeTooLarge
            | Code::MessageBatchTooLarge
            | Code::InvalidMessage
            | Code::InvalidMessageSize
            | Code::InvalidRecord
            | Code::InvalidRequiredAcks
            | Code::InvalidConfig
            | Code::UnsupportedVersion
            | Code::UnsupportedForMessageFormat
            | Code::UnsupportedCompressionType
            | Code::TopicAuthorizationFailed
            | Code::GroupAuthorizationFailed
            | Code::ClusterAuthorizationFailed
            | Code::TransactionalIdAuthorizationFailed
            | Code::InvalidArgument
            | Code::InvalidTopic
            | Code::InvalidPartitions
            | Code::InvalidReplicationFactor
            | Code::InvalidReplicaAssignment
            | Code::PolicyViolation
            | Code::Fatal
            | Code::Fenced
            | Code::InvalidProducerEpoch
    )
}

impl KafkaError {
    /// Why the brokers refuse this client, if that is what failed.
    pub fn connect_failure(&self) -> Option<&crate::ConnectFailure> {
        match self {
            Self::Connect(failure) => Some(failure),
            _ => None,
        }
    }

    /// The producer is at its bound (its slots are taken, or librdkafka's queue is full):
    /// nothing was sent, and the same message may go through soon.
    pub fn is_overloaded(&self) -> bool {
        matches!(self, Self::Overloaded { .. }) || self.code() == Some(Code::QueueFull)
    }

    /// The broker refused the message for its size: only a smaller one can go.
    pub fn is_too_large(&self) -> bool {
        matches!(
            self.code(),
            Some(Code::MessageSizeTooLarge | Code::InvalidMessageSize | Code::MessageBatchTooLarge)
        )
    }

    /// Whether a failed publish surely did not reach the broker. A publish that timed out, or
    /// whose connection broke after it was sent, may have been written all the same: its
    /// outcome is unknown, and sending it again could write it twice.
    pub fn surely_not_written(&self) -> bool {
        match self {
            Self::Config(_) | Self::Encode(_) | Self::Overloaded { .. } => true,
            Self::Timeout { .. } | Self::Connect(_) => false,
            // Refusals the broker (or librdkafka, before sending) answers for the record as
            // a whole; librdkafka retries anything else until its delivery timeout, which
            // leaves the outcome unknown.
            Self::Client { .. } => self.code().is_some_and(|code| {
                matches!(
                    code,
                    Code::QueueFull
                        | Code::MessageSizeTooLarge
                        | Code::InvalidMessageSize
                        | Code::MessageBatchTooLarge
                        | Code::InvalidMessage
                        | Code::InvalidRecord
                        | Code::UnknownTopic
                        | Code::UnknownTopicOrPartition
                        | Code::UnknownPartition
                        | Code::InvalidTopic
                        | Code::TopicAuthorizationFailed
                        | Code::ClusterAuthorizationFailed
                        | Code::PolicyViolation
                )
            }),
        }
    }

    fn code(&self) -> Option<Code> {
        match self {
            Self::Client { source, .. } => match source {
                RdError::AdminOp(code) => Some(*code),
                other => other.rdkafka_error_code(),
            },
            _ => None,
        }
    }
}

impl From<KafkaError> for SinkError {
    fn from(error: KafkaError) -> Self {
        if error.is_overloaded() {
            SinkError::overloaded(error)
        } else if error.is_retryable() {
            SinkError::unavailable(error)
        } else if error.is_too_large() {
            SinkError::too_large(error)
        } else {
            SinkError::rejected(error)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_broker_is_retryable_a_refused_message_is_not() {
        assert!(is_retryable(&RdError::MessageProduction(
            Code::MessageTimedOut
        )));
        assert!(is_retryable(&RdError::MessageProduction(
            Code::AllBrokersDown
        )));
        assert!(is_retryable(&RdError::MessageProduction(
            Code::NotEnoughReplicas
        )));
        assert!(!is_retryable(&RdError::MessageProduction(
            Code::MessageSizeTooLarge
        )));
        assert!(!is_retryable(&RdError::MessageProduction(
            Code::TopicAuthorizationFailed
        )));
        assert!(!is_retryable(&RdError::MessageConsumptionFatal(
            Code::Fatal
        )));
        assert!(!is_retryable(&RdError::AdminOp(Code::InvalidTopic)));
        assert!(!is_retryable(&RdError::AdminOp(
            Code::InvalidReplicationFactor
        )));
    }

    #[test]
    fn sink_errors_keep_the_class() {
        let timeout = KafkaError::Client {
            operation: "publish",
            source: RdError::MessageProduction(Code::MessageTimedOut),
        };
        assert!(SinkError::from(timeout).is_retryable());
        assert!(!SinkError::from(KafkaError::Encode("bad".into())).is_retryable());
        let client = |code| KafkaError::Client {
            operation: "publish",
            source: RdError::MessageProduction(code),
        };
        // Only a size refusal lets a dead letter be cut down; an ACL or policy waits.
        for too_large in [Code::MessageSizeTooLarge, Code::MessageBatchTooLarge] {
            assert!(matches!(
                SinkError::from(client(too_large)),
                SinkError::TooLarge(_)
            ));
        }
        assert!(matches!(
            SinkError::from(client(Code::TopicAuthorizationFailed)),
            SinkError::Rejected(_)
        ));
        assert!(matches!(
            SinkError::from(client(Code::PolicyViolation)),
            SinkError::Rejected(_)
        ));
        // A full queue or no free slot is "not now", not an outage.
        for overloaded in [
            client(Code::QueueFull),
            KafkaError::Overloaded {
                max_in_flight: 4,
                waited: std::time::Duration::from_millis(250),
            },
        ] {
            assert!(overloaded.is_overloaded());
            assert!(overloaded.surely_not_written());
            let error = SinkError::from(overloaded);
            assert!(matches!(error, SinkError::Overloaded(_)), "{error}");
            assert!(error.is_retryable());
        }
        assert!(!client(Code::MessageTimedOut).is_overloaded());
    }

    #[test]
    fn a_timed_out_publish_may_have_been_written() {
        let client = |code| KafkaError::Client {
            operation: "publish",
            source: RdError::MessageProduction(code),
        };
        assert!(!client(Code::MessageTimedOut).surely_not_written());
        assert!(!client(Code::RequestTimedOut).surely_not_written());
        assert!(!client(Code::AllBrokersDown).surely_not_written());
        assert!(client(Code::QueueFull).surely_not_written());
        assert!(client(Code::MessageSizeTooLarge).surely_not_written());
        assert!(client(Code::TopicAuthorizationFailed).surely_not_written());
    }
}
