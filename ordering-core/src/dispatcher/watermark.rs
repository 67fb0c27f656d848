//! The commit watermark of one partition: records finish out of order, offsets are committed
//! in order.

use std::collections::VecDeque;

/// Offsets received and not yet committed, in order, each with whether it is done.
///
/// Offsets are not assumed contiguous (compaction and transaction markers leave gaps), so the
/// watermark is "one past the last offset of the done prefix", never "last + 1 guessed".
#[derive(Debug, Default)]
pub(crate) struct Watermark {
    pending: VecDeque<(i64, bool)>,
    /// The highest offset ever tracked, done or not: a record at or below it means the
    /// partition went backwards, even once everything before it was committed.
    last: Option<i64>,
}

impl Watermark {
    /// Starts tracking `offset`. Refuses an offset not above the last one tracked: tracking it
    /// could let the watermark pass an unfinished record, or commit over new records.
    pub(crate) fn track(&mut self, offset: i64) -> bool {
        if self.last.is_some_and(|last| offset <= last) {
            return false;
        }
        self.last = Some(offset);
        self.pending.push_back((offset, false));
        true
    }

    /// Marks `offset` done. Returns the new commit position (the next offset to consume) when
    /// the done prefix grew.
    pub(crate) fn complete(&mut self, offset: i64) -> Option<i64> {
        // Fast path: in partition lanes records finish in order, so it is the front.
        match self.pending.front_mut() {
            Some((front, done)) if *front == offset => *done = true,
            _ => {
                let i = self
                    .pending
                    .binary_search_by_key(&offset, |&(o, _)| o)
                    .ok()?;
                self.pending[i].1 = true;
                return None; // something before it is still pending
            }
        }
        let mut committed = None;
        while let Some(&(offset, true)) = self.pending.front() {
            committed = Some(offset + 1);
            self.pending.pop_front();
        }
        committed
    }

    /// Records received and not yet committable.
    pub(crate) fn len(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_completion_advances_each_time() {
        let mut w = Watermark::default();
        for o in 0..3 {
            assert!(w.track(o));
        }
        assert_eq!(w.complete(0), Some(1));
        assert_eq!(w.complete(1), Some(2));
        assert_eq!(w.complete(2), Some(3));
        assert_eq!(w.len(), 0);
    }

    #[test]
    fn only_the_contiguous_done_prefix_is_committed() {
        let mut w = Watermark::default();
        for o in [10, 11, 12, 13] {
            w.track(o);
        }
        assert_eq!(w.complete(12), None);
        assert_eq!(w.complete(11), None);
        assert_eq!(w.complete(10), Some(13));
        assert_eq!(w.len(), 1);
        assert_eq!(w.complete(13), Some(14));
    }

    #[test]
    fn gaps_in_offsets_are_not_guessed_over() {
        let mut w = Watermark::default();
        for o in [5, 9, 20] {
            w.track(o);
        }
        assert_eq!(w.complete(9), None);
        assert_eq!(w.complete(5), Some(10));
        assert_eq!(w.complete(20), Some(21));
    }

    #[test]
    fn rewinds_and_unknown_offsets_are_refused() {
        let mut w = Watermark::default();
        assert!(w.track(7));
        assert!(!w.track(7));
        assert!(!w.track(3));
        assert_eq!(w.complete(4), None);
        assert_eq!(w.len(), 1);
        // Refused even once everything tracked is done.
        assert_eq!(w.complete(7), Some(8));
        assert!(!w.track(7));
        assert!(w.track(8));
    }
}
