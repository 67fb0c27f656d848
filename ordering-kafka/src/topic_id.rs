//! The ids brokers give topics (Kafka's KIP-516): a topic deleted and created again under its
//! name gets a new id, while its offsets start over. rust-rdkafka has no binding for
//! librdkafka's `DescribeTopics`, so this module calls it through `rdkafka::bindings`: the
//! crate's one use of `unsafe` outside tests, kept to this file.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString, c_char, c_int};
use std::time::Duration;

use rdkafka::bindings as rd;
use rdkafka::client::{Client, ClientContext};
use rdkafka::error::KafkaError as RdError;
use rdkafka::types::RDKafkaErrorCode;

use crate::error::KafkaError;

const OPERATION: &str = "describing topics";

/// Owns a librdkafka object and destroys it when dropped.
struct Owned<T>(*mut T, unsafe extern "C" fn(*mut T));

impl<T> Drop for Owned<T> {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: `self.0` came from librdkafka's constructor for this destructor and is
            // destroyed once, here.
            unsafe { (self.1)(self.0) }
        }
    }
}

fn failed(code: rd::rd_kafka_resp_err_t) -> KafkaError {
    KafkaError::Client {
        operation: OPERATION,
        source: RdError::AdminOp(RDKafkaErrorCode::from(code)),
    }
}

/// The id of each of `topics` the brokers know, as `(name, id)` in base64 (as Kafka's tools
/// print it). A topic the brokers do not know (deleted, not created yet) is left out. A broker
/// too old to give ids gives the zero id for every topic: then one topic has one id forever,
/// and a re-creation goes unseen. Blocks its thread for up to `timeout`.
pub(crate) fn describe<C: ClientContext>(
    client: &Client<C>,
    topics: &[&str],
    timeout: Duration,
) -> Result<Vec<(String, String)>, KafkaError> {
    let names = topics
        .iter()
        .map(|t| CString::new(*t))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| KafkaError::Config("a topic name holds a NUL byte".into()))?;
    let mut pointers: Vec<*const c_char> = names.iter().map(|n| n.as_ptr()).collect();
    let timeout_ms = c_int::try_from(timeout.as_millis()).unwrap_or(c_int::MAX);
    let timed_out = || KafkaError::Timeout {
        operation: OPERATION,
        after: timeout,
    };
    let rk = client.native_ptr();
    // SAFETY: `rk` is valid while `client` is borrowed, for the whole call. Every object made
    // here is owned by an `Owned` (destroyed on every path out) and outlives the pointers read
    // from it: the descriptions and their strings belong to `event`, which is dropped last of
    // what they are read from, after they were copied into owned `String`s. The topic names
    // are copied by librdkafka when the collection is made.
    unsafe {
        let queue = Owned(rd::rd_kafka_queue_new(rk), rd::rd_kafka_queue_destroy);
        let collection = Owned(
            rd::rd_kafka_TopicCollection_of_topic_names(pointers.as_mut_ptr(), pointers.len()),
            rd::rd_kafka_TopicCollection_destroy,
        );
        let options = Owned(
            rd::rd_kafka_AdminOptions_new(
                rk,
                rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DESCRIBETOPICS,
            ),
            rd::rd_kafka_AdminOptions_destroy,
        );
        if queue.0.is_null() || collection.0.is_null() || options.0.is_null() {
            return Err(failed(rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR__FAIL));
        }
        let mut reason = [0 as c_char; 256];
        let set = rd::rd_kafka_AdminOptions_set_request_timeout(
            options.0,
            timeout_ms,
            reason.as_mut_ptr(),
            reason.len(),
        );
        if set != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            return Err(failed(set));
        }
        rd::rd_kafka_DescribeTopics(rk, collection.0, options.0, queue.0);
        // librdkafka answers by the request timeout; the margin is for its own bookkeeping.
        let event = Owned(
            rd::rd_kafka_queue_poll(queue.0, timeout_ms.saturating_add(1000)),
            rd::rd_kafka_event_destroy,
        );
        if event.0.is_null() {
            return Err(timed_out());
        }
        let code = rd::rd_kafka_event_error(event.0);
        if code == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR__TIMED_OUT {
            return Err(timed_out());
        }
        if code != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            return Err(failed(code));
        }
        let result = rd::rd_kafka_event_DescribeTopics_result(event.0);
        if result.is_null() {
            return Err(failed(rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR__FAIL));
        }
        let mut count = 0usize;
        let descriptions = rd::rd_kafka_DescribeTopics_result_topics(result, &mut count);
        let mut ids = Vec::with_capacity(count);
        for i in 0..count {
            let description = *descriptions.add(i);
            let error = rd::rd_kafka_TopicDescription_error(description);
            if !error.is_null() {
                match rd::rd_kafka_error_code(error) {
                    rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR => {}
                    rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART
                    | rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_ID => continue,
                    code => return Err(failed(code)),
                }
            }
            let name = CStr::from_ptr(rd::rd_kafka_TopicDescription_name(description));
            let id = rd::rd_kafka_TopicDescription_topic_id(description);
            if id.is_null() {
                continue;
            }
            let id = CStr::from_ptr(rd::rd_kafka_Uuid_base64str(id));
            ids.push((
                name.to_string_lossy().into_owned(),
                id.to_string_lossy().into_owned(),
            ));
        }
        Ok(ids)
    }
}
