//! Who is in a consumer group and what each member holds, as the group's coordinator says:
//! for an operator's view of several instances (which partitions each one consumes).

use std::time::Duration;

use rdkafka::client::Client;
use rdkafka::producer::Producer;

use crate::KafkaError;
use ordering_core::TopicPartition;

/// One member of a consumer group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    /// The id the coordinator gave the member when it joined the group.
    pub member_id: String,
    /// The `client.id` the member's consumer connects with.
    pub client_id: String,
    /// The address the coordinator sees it connect from.
    pub client_host: String,
    /// The partitions assigned to it, sorted; empty while the group rebalances.
    pub partitions: Vec<TopicPartition>,
}

impl crate::KafkaProducer {
    /// The members of `group` and their partitions (a DescribeGroups request through this
    /// producer's connection). Empty when the group has no members.
    pub async fn group_members(
        &self,
        group: &str,
        timeout: Duration,
    ) -> Result<Vec<GroupMember>, KafkaError> {
        let producer = self.producer.clone();
        let group = group.to_owned();
        // librdkafka's group request blocks the calling thread.
        tokio::task::spawn_blocking(move || describe(producer.client(), &group, timeout))
            .await
            .map_err(|_| KafkaError::Timeout {
                operation: "describing the consumer group",
                after: timeout,
            })?
    }
}

fn describe<C: rdkafka::ClientContext>(
    client: &Client<C>,
    group: &str,
    timeout: Duration,
) -> Result<Vec<GroupMember>, KafkaError> {
    let list = client
        .fetch_group_list(Some(group), timeout)
        .map_err(KafkaError::client("describing the consumer group"))?;
    let mut members: Vec<GroupMember> = list
        .groups()
        .iter()
        .filter(|g| g.name() == group)
        .flat_map(|g| g.members())
        .map(|m| GroupMember {
            member_id: m.id().to_owned(),
            client_id: m.client_id().to_owned(),
            client_host: m.client_host().to_owned(),
            partitions: m.assignment().map(assignment).unwrap_or_default(),
        })
        .collect();
    members.sort_by(|a, b| a.partitions.cmp(&b.partitions));
    Ok(members)
}

/// The partitions of a member's assignment, in the consumer protocol's encoding (version,
/// then per topic its name and partitions); what does not parse reads as none.
fn assignment(bytes: &[u8]) -> Vec<TopicPartition> {
    let mut reader = Reader(bytes);
    let mut partitions = Vec::new();
    let parsed = (|| {
        reader.i16()?;
        for _ in 0..reader.i32()? {
            let topic = reader.string()?;
            for _ in 0..reader.i32()? {
                partitions.push(TopicPartition::new(topic.clone(), reader.i32()?));
            }
        }
        Some(())
    })();
    if parsed.is_none() {
        return Vec::new();
    }
    partitions.sort();
    partitions
}

/// Big-endian reads that stop at the end of the bytes.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }

    fn i16(&mut self) -> Option<i16> {
        self.take().map(i16::from_be_bytes)
    }

    fn i32(&mut self) -> Option<i32> {
        self.take().map(i32::from_be_bytes)
    }

    fn string(&mut self) -> Option<String> {
        let len = usize::try_from(self.i16()?).ok()?;
        let (text, rest) = self.0.split_at_checked(len)?;
        self.0 = rest;
        String::from_utf8(text.to_vec()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_assignment_reads_as_its_partitions() {
        let mut bytes = vec![0, 1, 0, 0, 0, 2];
        for (topic, partitions) in [("b", vec![2i32, 0]), ("a", vec![1])] {
            bytes.extend((topic.len() as i16).to_be_bytes());
            bytes.extend(topic.as_bytes());
            bytes.extend((partitions.len() as i32).to_be_bytes());
            for p in partitions {
                bytes.extend(i32::to_be_bytes(p));
            }
        }
        bytes.extend([0, 0, 0, 0]); // no user data
        let read = assignment(&bytes);
        let want = [("a", 1), ("b", 0), ("b", 2)].map(|(t, p)| TopicPartition::new(t, p));
        assert_eq!(read, want);
        // Cut short anywhere: none, never a panic.
        for end in 0..bytes.len() - 4 {
            let _ = assignment(&bytes[..end]);
        }
        assert_eq!(assignment(&bytes[..9]), []);
        assert_eq!(assignment(&[0, 1, 0, 0, 0, 1, 0xff, 0xff]), []);
    }
}
