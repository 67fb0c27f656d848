//! The console's overview: the group, the lag, the charts' series.

use std::time::Duration;

use hyper::StatusCode;
use ordering_core::TopicPartition;
use ordering_http::{Response, json};
use ordering_kafka::GroupMember;
use serde_json::json;

use super::HEALTH_TIMEOUT;
use crate::App;
use crate::console::{Facts, series};

/// How long the group's members, once asked, answer the overview.
const MEMBERS_FOR: Duration = Duration::from_secs(5);

impl App {
    /// The console's overview: the group's members and their partitions, the lag of the
    /// partitions this instance holds, and the last hour of the charts' series.
    /// With a token configured, for the operator only: it names the group's hosts.
    pub(super) async fn console_overview(&self) -> Response {
        let group = &self.config.consumer_group;
        let held: Vec<TopicPartition> = self
            .consumer
            .get()
            .map(|(_, source)| source.assigned())
            .unwrap_or_default();
        let names = |partitions: &[TopicPartition]| -> Vec<String> {
            partitions.iter().map(ToString::to_string).collect()
        };
        // As the coordinator sees the group; this instance alone when it cannot be asked, or
        // describes no assignments (some Kafka-protocol brokers leave them out).
        let (instances, members_error) = match self.group_members().await {
            Ok(members) if members.iter().any(|m| !m.partitions.is_empty()) => (
                members
                    .iter()
                    .map(|m| {
                        json!({
                            "clientId": m.client_id,
                            "host": m.client_host,
                            "partitions": names(&m.partitions),
                            // Two members never hold the same partitions.
                            "thisInstance": !held.is_empty() && m.partitions == held,
                        })
                    })
                    .collect::<Vec<_>>(),
                None,
            ),
            described => (
                vec![json!({
                    "clientId": "this instance",
                    "host": null,
                    "partitions": names(&held),
                    "thisInstance": true,
                })],
                Some(match described {
                    Err(error) => error.to_string(),
                    Ok(members) if members.is_empty() => {
                        "the coordinator lists no members yet".to_owned()
                    }
                    Ok(_) => "the coordinator describes no member's partitions".to_owned(),
                }),
            ),
        };
        let exposition = self.metrics.render();
        let held: Vec<(String, i32)> = held
            .iter()
            .map(|tp| (tp.topic.to_string(), tp.partition))
            .collect();
        json(
            StatusCode::OK,
            &json!({
                "success": true,
                "consumerGroup": group,
                "instances": instances,
                "membersError": members_error,
                "lag": series::lag(&exposition, group, &held),
                "series": self.series.json(),
            }),
        )
    }

    /// The group's members, asked of the coordinator at most every [`MEMBERS_FOR`]: however
    /// many consoles poll, one request at a time reaches the broker (on a blocking thread).
    async fn group_members(&self) -> Result<Vec<GroupMember>, String> {
        let mut cached = self.members.lock().await;
        if let Some((at, members)) = cached.as_ref()
            && at.elapsed() < MEMBERS_FOR
        {
            return members.clone();
        }
        let members = self
            .producer
            .group_members(&self.config.consumer_group, HEALTH_TIMEOUT)
            .await
            .map_err(|e| e.to_string());
        *cached = Some((std::time::Instant::now(), members.clone()));
        members
    }

    pub(super) fn console_facts(&self) -> Facts {
        Facts {
            token_configured: self.config.operator_token.is_some(),
            dlq_topic: self.config.dlq_topic.clone(),
            consumer_group: self.config.consumer_group.clone(),
        }
    }
}
