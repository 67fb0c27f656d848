//! Lanes of one partition: records of a lane run one at a time, in order; lanes run
//! concurrently.

use std::collections::VecDeque;
use std::hash::{DefaultHasher, Hash, Hasher};

use rustc_hash::FxHashMap;

use crate::record::RecordMeta;

/// How records are grouped into lanes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LaneMode {
    /// One lane per partition: the partition's order is kept, a retrying record holds back
    /// its whole partition.
    #[default]
    Partition,
    /// One lane per key within a partition: order is kept per key, a retrying record holds
    /// back only its key. Records without a key share one lane.
    Key,
}

/// A lane within its partition. Lane 0 is the partition's own lane (and that of unkeyed
/// records); key lanes are never 0.
pub(crate) type LaneId = u64;

impl LaneMode {
    pub(crate) fn lane_of(self, meta: &RecordMeta) -> LaneId {
        match (self, &meta.key) {
            (Self::Key, Some(key)) => {
                // Two keys that collide share a lane: order is still kept, only concurrency
                // is lost, so a hash is enough and no key is copied.
                let mut hasher = DefaultHasher::new();
                key.hash(&mut hasher);
                hasher.finish() | 1
            }
            _ => 0,
        }
    }
}

/// One lane: `None` when idle, else what waits behind the running item.
type Lane<T> = Option<VecDeque<T>>;

/// The busy lanes of a partition and what waits in them. An idle key lane has no entry.
#[derive(Debug)]
pub(crate) struct Lanes<T> {
    // Lane 0 on its own: in partition mode it is the only lane, and a map lookup per record
    // would be most of the bookkeeping.
    partition: Lane<T>,
    // The ids are already hashes, so a fast non-keyed hasher is enough.
    keys: FxHashMap<LaneId, VecDeque<T>>,
}

impl<T> Default for Lanes<T> {
    fn default() -> Self {
        Self {
            partition: None,
            keys: FxHashMap::default(),
        }
    }
}

impl<T> Lanes<T> {
    /// Takes `item` into `lane`: returns it back if the lane was idle (start it now),
    /// otherwise queues it behind the running one.
    pub(crate) fn admit(&mut self, lane: LaneId, item: T) -> Option<T> {
        let queue = match lane {
            0 => &mut self.partition,
            _ => match self.keys.get_mut(&lane) {
                Some(queue) => {
                    queue.push_back(item);
                    return None;
                }
                None => {
                    self.keys.insert(lane, VecDeque::new());
                    return Some(item);
                }
            },
        };
        match queue {
            Some(queue) => {
                queue.push_back(item);
                None
            }
            None => {
                *queue = Some(VecDeque::new());
                Some(item)
            }
        }
    }

    /// The running item of `lane` finished: returns the next one to start, if any.
    pub(crate) fn finish(&mut self, lane: LaneId) -> Option<T> {
        if lane == 0 {
            let next = self.partition.as_mut()?.pop_front();
            if next.is_none() {
                self.partition = None;
            }
            return next;
        }
        let queue = self.keys.get_mut(&lane)?;
        let next = queue.pop_front();
        if next.is_none() {
            self.keys.remove(&lane);
        }
        next
    }

    /// Items waiting (not running) over all lanes.
    pub(crate) fn queued(&self) -> usize {
        self.partition.as_ref().map_or(0, VecDeque::len)
            + self.keys.values().map(VecDeque::len).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lane_runs_one_item_at_a_time_in_order() {
        let mut lanes = Lanes::default();
        assert_eq!(lanes.admit(1, "a"), Some("a"));
        assert_eq!(lanes.admit(1, "b"), None);
        assert_eq!(lanes.admit(1, "c"), None);
        assert_eq!(lanes.admit(0, "x"), Some("x"));
        assert_eq!(lanes.admit(0, "y"), None);
        assert_eq!(lanes.queued(), 3);
        assert_eq!(lanes.finish(0), Some("y"));
        assert_eq!(lanes.finish(0), None);
        assert_eq!(lanes.finish(1), Some("b"));
        assert_eq!(lanes.finish(1), Some("c"));
        assert_eq!(lanes.finish(1), None);
        assert_eq!(lanes.admit(1, "d"), Some("d"));
    }

    #[test]
    fn key_mode_separates_keys_and_partition_mode_does_not() {
        use crate::record::TopicPartition;
        let meta = |key: &[u8]| RecordMeta {
            key: Some(key.to_vec()),
            ..RecordMeta::new(TopicPartition::new("t", 0), 0)
        };
        assert_ne!(
            LaneMode::Key.lane_of(&meta(b"a")),
            LaneMode::Key.lane_of(&meta(b"b"))
        );
        assert_eq!(
            LaneMode::Key.lane_of(&meta(b"a")),
            LaneMode::Key.lane_of(&meta(b"a"))
        );
        assert_eq!(
            LaneMode::Partition.lane_of(&meta(b"a")),
            LaneMode::Partition.lane_of(&meta(b"b"))
        );
    }
}
