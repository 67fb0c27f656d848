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
        operation: &'static str,
        after: std::time::Duration,
    },
    #[error("{operation} failed: {source}")]
    Client {
        operation: &'static str,
        #[source]
        source: RdError,
    },
}

impl KafkaError {
    pub(crate) fn client(operation: &'static str) -> impl FnOnce(RdError) -> Self {
        move |source| match source {
            RdError::ClientConfig(..) => Self::Config(source.to_string()),
            source => Self::Client { operation, source },
        }
    }

    /// Worth trying again later: the broker is down, slow or electing a leader. Not worth it:
    /// bad configuration, a message the broker refuses, missing authorisation.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Config(_) | Self::Encode(_) => false,
            Self::Timeout { .. } => true,
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
        Some(code) => !matches!(
            code,
            Code::MessageSizeTooLarge
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
                | Code::SaslAuthenticationFailed
                | Code::InvalidArgument
                | Code::InvalidTopic
                | Code::InvalidPartitions
                | Code::InvalidReplicationFactor
                | Code::InvalidReplicaAssignment
                | Code::PolicyViolation
                | Code::Fatal
                | Code::Fenced
                | Code::InvalidProducerEpoch
        ),
    }
}

impl From<KafkaError> for SinkError {
    fn from(error: KafkaError) -> Self {
        if error.is_retryable() {
            SinkError::unavailable(error)
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
    }
}
