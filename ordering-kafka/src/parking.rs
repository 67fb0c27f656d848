//! What a source does with the records of partitions the dispatcher paused (at its in-flight
//! bound): it parks them, in order, and hands them out first once the partition is resumed.
//! Pausing librdkafka instead drops what it prefetched, and a resumed partition is fetched
//! again only when librdkafka's broker thread next decides (up to a second later): a consumer
//! held at its bound by handlers that wait spent most of its time waiting for those fetches
//! (BENCHMARKS.md, "Handlers that wait"). Parking is bounded: a partition with its bound
//! parked is paused in librdkafka too, and resumed there once half of that is handed out.
//! This type decides; the source calls librdkafka.

use std::collections::VecDeque;

use ordering_core::{Record, TopicPartition};
use rustc_hash::{FxHashMap, FxHashSet};

/// The bytes of records a source parks per paused partition before it pauses the partition in
/// librdkafka (`SourceConfig::max_parked_bytes_per_partition`): 8 MiB, about 25 000 small
/// records, a second's worth at the rates measured; librdkafka's own prefetch queue is 64 MiB.
pub const PARKED_BYTES_PER_PARTITION: usize = 8 << 20;

/// What a parked record is counted as beyond its key, payload and headers: the record, its
/// decoded event and the queue's slot.
const RECORD_OVERHEAD: usize = 256;

/// The paused partitions and their parked records.
#[derive(Debug)]
pub(crate) struct Parking<E> {
    /// Partitions the dispatcher paused.
    paused: FxHashSet<TopicPartition>,
    parked: FxHashMap<TopicPartition, Lot<E>>,
    /// Resumed partitions with records still parked, handed out before anything received.
    unparking: VecDeque<TopicPartition>,
    /// Partitions paused in librdkafka because their parked records reached the bound.
    fetch_paused: FxHashSet<TopicPartition>,
    limit: usize,
}

#[derive(Debug)]
struct Lot<E> {
    records: VecDeque<Record<E>>,
    bytes: usize,
}

impl<E> Default for Lot<E> {
    fn default() -> Self {
        Self {
            records: VecDeque::new(),
            bytes: 0,
        }
    }
}

impl<E> Parking<E> {
    /// Parks up to `limit` bytes per paused partition.
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            paused: FxHashSet::default(),
            parked: FxHashMap::default(),
            unparking: VecDeque::new(),
            fetch_paused: FxHashSet::default(),
            limit,
        }
    }

    /// From now on, what arrives for `tp` is parked.
    pub(crate) fn pause(&mut self, tp: &TopicPartition) {
        self.paused.insert(tp.clone());
    }

    /// Whether the dispatcher paused `tp`. Asked of every record: no hashing while nothing
    /// is paused.
    pub(crate) fn is_paused(&self, tp: &TopicPartition) -> bool {
        !self.paused.is_empty() && self.paused.contains(tp)
    }

    /// Whether `tp` is paused in librdkafka for its parked records.
    pub(crate) fn holds_fetch(&self, tp: &TopicPartition) -> bool {
        self.fetch_paused.contains(tp)
    }

    /// `tp`'s parked records are handed out again; `true` when librdkafka is to fetch it
    /// again too (little enough is parked).
    pub(crate) fn resume(&mut self, tp: &TopicPartition) -> bool {
        if !self.paused.remove(tp) {
            return false;
        }
        if self
            .parked
            .get(tp)
            .is_some_and(|lot| !lot.records.is_empty())
        {
            self.unparking.push_back(tp.clone());
        }
        self.release_fetch(tp)
    }

    /// Parks `record` (of a paused partition); `true` when its partition is now to be paused
    /// in librdkafka (its parked records reached the bound).
    pub(crate) fn park(&mut self, record: Record<E>) -> bool {
        let tp = record.meta.tp.clone();
        let lot = self.parked.entry(tp.clone()).or_default();
        lot.bytes += size(&record);
        lot.records.push_back(record);
        lot.bytes >= self.limit && self.fetch_paused.insert(tp)
    }

    /// The next parked record of a resumed partition, in the order received, and the
    /// partition librdkafka is to fetch again, if handing it out made room.
    pub(crate) fn unpark(&mut self) -> (Option<Record<E>>, Option<TopicPartition>) {
        while let Some(tp) = self.unparking.front().cloned() {
            // (Cloned: an `Arc`'s count, and only while records are parked.)
            // Paused again: the rest waits for the next resume, which queues it again.
            let record = match self.paused.contains(&tp) {
                true => None,
                false => self.parked.get_mut(&tp).and_then(|lot| {
                    let record = lot.records.pop_front()?;
                    lot.bytes -= size(&record);
                    Some(record)
                }),
            };
            if let Some(record) = record {
                let fetch = self.release_fetch(&tp).then_some(tp);
                return (Some(record), fetch);
            }
            self.unparking.pop_front();
            if !self.paused.contains(&tp) {
                self.parked.remove(&tp);
            }
        }
        (None, None)
    }

    /// Forgets revoked partitions: their parked records were never acknowledged, so whoever
    /// is assigned the partition reads them again.
    pub(crate) fn revoke(&mut self, revoked: &[TopicPartition]) {
        self.paused.retain(|tp| !revoked.contains(tp));
        self.parked.retain(|tp, _| !revoked.contains(tp));
        self.unparking.retain(|tp| !revoked.contains(tp));
        self.fetch_paused.retain(|tp| !revoked.contains(tp));
    }

    /// Ends librdkafka's pause of a resumed `tp` once at most half the bound is parked:
    /// `true` when it ends.
    fn release_fetch(&mut self, tp: &TopicPartition) -> bool {
        let parked = self.parked.get(tp).map_or(0, |lot| lot.bytes);
        !self.paused.contains(tp) && parked <= self.limit / 2 && self.fetch_paused.remove(tp)
    }
}

fn size<E>(record: &Record<E>) -> usize {
    let meta = &record.meta;
    let headers: usize = meta
        .headers
        .iter()
        .map(|h| h.name.len() + h.value.as_ref().map_or(0, Vec::len))
        .sum();
    RECORD_OVERHEAD + record.payload.len() + meta.key.as_ref().map_or(0, Vec::len) + headers
}

#[cfg(test)]
mod tests {
    use super::*;
    use ordering_core::RecordMeta;

    fn record(partition: i32, offset: i64) -> Record<()> {
        let meta = RecordMeta::new(TopicPartition::new("t", partition), offset);
        Record {
            meta,
            payload: vec![0; 768],
            event: Ok(()),
        }
    }

    /// Each record counts 1 KiB (768 bytes and the overhead): a bound of 4 KiB is 4 records.
    fn parking() -> Parking<()> {
        Parking::new(4 * 1024)
    }

    fn offsets(parking: &mut Parking<()>) -> Vec<(i32, i64)> {
        std::iter::from_fn(|| parking.unpark().0)
            .map(|r| (r.meta.tp.partition, r.meta.offset))
            .collect()
    }

    #[test]
    fn parked_records_come_out_in_order_after_the_resume_and_not_before() {
        let mut parking = parking();
        let tp = TopicPartition::new("t", 0);
        parking.pause(&tp);
        assert!(parking.is_paused(&tp));
        for offset in 0..3 {
            assert!(!parking.park(record(0, offset)), "under the bound");
        }
        assert_eq!(offsets(&mut parking), vec![], "nothing while paused");
        assert!(!parking.resume(&tp), "librdkafka was never paused");
        assert_eq!(offsets(&mut parking), vec![(0, 0), (0, 1), (0, 2)]);
        assert!(!parking.resume(&tp), "resuming twice is nothing");
    }

    #[test]
    fn librdkafka_is_paused_at_the_bound_and_resumed_once_half_is_handed_out() {
        let mut parking = parking();
        let tp = TopicPartition::new("t", 0);
        parking.pause(&tp);
        let paused: Vec<bool> = (0..4).map(|o| parking.park(record(0, o))).collect();
        assert_eq!(paused, vec![false, false, false, true]);
        assert!(parking.holds_fetch(&tp));
        assert!(!parking.resume(&tp), "4 KiB parked: not yet");
        let (first, fetch) = parking.unpark();
        assert_eq!((first.map(|r| r.meta.offset), fetch), (Some(0), None));
        let (second, fetch) = parking.unpark();
        assert_eq!(second.map(|r| r.meta.offset), Some(1));
        assert_eq!(fetch, Some(tp.clone()), "half handed out: fetch again");
        assert!(!parking.holds_fetch(&tp));
        assert_eq!(offsets(&mut parking), vec![(0, 2), (0, 3)]);
    }

    #[test]
    fn paused_again_midway_keeps_the_rest_behind_what_comes_next() {
        let mut parking = parking();
        let tp = TopicPartition::new("t", 0);
        parking.pause(&tp);
        for offset in 0..3 {
            parking.park(record(0, offset));
        }
        parking.resume(&tp);
        assert_eq!(parking.unpark().0.map(|r| r.meta.offset), Some(0));
        parking.pause(&tp);
        assert!(parking.unpark().0.is_none());
        parking.park(record(0, 3));
        parking.resume(&tp);
        assert_eq!(offsets(&mut parking), vec![(0, 1), (0, 2), (0, 3)]);
    }

    #[test]
    fn other_partitions_and_revocations() {
        let mut parking = parking();
        let (a, b) = (TopicPartition::new("t", 0), TopicPartition::new("t", 1));
        parking.pause(&a);
        parking.pause(&b);
        for offset in 0..2 {
            parking.park(record(0, offset));
            parking.park(record(1, offset));
        }
        parking.revoke(std::slice::from_ref(&a));
        assert!(!parking.is_paused(&a));
        assert!(!parking.resume(&a), "revoked: not paused any more");
        parking.resume(&b);
        assert_eq!(offsets(&mut parking), vec![(1, 0), (1, 1)], "a's are gone");
    }
}
