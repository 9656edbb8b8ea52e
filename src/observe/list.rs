//! What happened to one list, in the shape a table view animates: deletions against the list
//! before, insertions and modifications against the list after, and moves from one to the
//! other ([`ListChanges`]), built from the store-level edits the replica made
//! (`ListTracker`).
//!
//! The tracker never reads the list. It describes the list as it is now as a sequence of
//! *runs*: stretches of elements that were consecutive in the list before (by their old
//! index), and stretches of elements inserted since. Everything behind the last edit is one
//! open-ended stretch of old elements (the *tail*), whose length nobody needs to know until
//! the list is cleared (a clear says how long the list was). So the cost of tracking follows the
//! edits, not the list's length: an edit finds its run by walking the chunk lengths, then the
//! runs of one chunk ([`CHUNK_RUNS`] at most), and splits at most one run.
//!
//! When the changes are taken, the old runs that still appear in increasing order of old index
//! and weigh the most (a longest increasing subsequence, weighted by length) stay where they
//! are; the elements of every other old run are reported as moved.

use serde::{Serialize, Serializer};
use std::ops::Range;

/// A set of list indices, kept as sorted, disjoint, non-empty ranges.
///
/// ```
/// use objsync::observe::IndexSet;
///
/// let set = IndexSet::from_indices([7, 2, 3, 4]);
/// assert_eq!(set.ranges(), [2..5, 7..8]);
/// assert_eq!(set.iter().collect::<Vec<_>>(), [2, 3, 4, 7]);
/// assert!(set.contains(3) && !set.contains(5));
/// assert_eq!(set.len(), 4);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IndexSet {
    ranges: Vec<Range<usize>>,
}

impl IndexSet {
    /// The set of the indices in `ranges`, which may overlap, touch or come in any order.
    pub fn from_ranges(mut ranges: Vec<Range<usize>>) -> IndexSet {
        ranges.retain(|r| !r.is_empty());
        ranges.sort_unstable_by_key(|r| r.start);
        let mut out: Vec<Range<usize>> = Vec::with_capacity(ranges.len());
        for r in ranges {
            match out.last_mut() {
                Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
                _ => out.push(r),
            }
        }
        IndexSet { ranges: out }
    }

    /// The set of these indices.
    pub fn from_indices(indices: impl IntoIterator<Item = usize>) -> IndexSet {
        IndexSet::from_ranges(indices.into_iter().map(|i| i..i + 1).collect())
    }

    /// The ranges, ascending, disjoint and not touching.
    pub fn ranges(&self) -> &[Range<usize>] {
        &self.ranges
    }

    /// The indices, ascending.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = usize> + '_ {
        self.ranges.iter().flat_map(|r| r.clone())
    }

    /// The number of indices.
    pub fn len(&self) -> usize {
        self.ranges.iter().map(|r| r.len()).sum()
    }

    /// Whether the set holds no index.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Whether the set holds `index`.
    pub fn contains(&self, index: usize) -> bool {
        let i = self.ranges.partition_point(|r| r.end <= index);
        self.ranges.get(i).is_some_and(|r| r.contains(&index))
    }
}

/// In JSON: an array of `[start, end]` pairs (end exclusive).
impl Serialize for IndexSet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.ranges.iter().map(|r| (r.start, r.end)))
    }
}

/// An element that moved: its index in the list before and in the list after.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Move {
    /// Its index in the list before.
    pub from: usize,
    /// Its index in the list after.
    pub to: usize,
}

/// What changed in one list, as a table view animates it.
///
/// To bring a copy of the old list up to date: remove the elements at `deletions` and at every
/// move's `from` (old indices, highest first), then insert the inserted elements at
/// `insertions` and the moved ones at their `to` (new indices, lowest first), then reload the
/// elements at `modifications` (new indices). An element both moved and modified is in
/// `moves` and in `modifications`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ListChanges {
    /// Indices in the list before of the elements removed.
    pub deletions: IndexSet,
    /// Indices in the list after of the elements added.
    pub insertions: IndexSet,
    /// Indices in the list after of the elements whose value was set (elements that were in the
    /// list before and still are).
    pub modifications: IndexSet,
    /// Elements that are in both lists but not in the same order as the others.
    pub moves: Vec<Move>,
}

impl ListChanges {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.deletions.is_empty()
            && self.insertions.is_empty()
            && self.modifications.is_empty()
            && self.moves.is_empty()
    }
}

/// The most runs one chunk of a tracker holds; a chunk that grows past it is split in two.
const CHUNK_RUNS: usize = 64;

/// A stretch of the list as it is now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Run {
    /// Elements that were at old indices `start..start + len`, in that order; `modified` when
    /// each of them was set.
    Old {
        start: usize,
        len: usize,
        modified: bool,
    },
    /// Elements that were not in the old list.
    New { len: usize },
}

impl Run {
    fn len(&self) -> usize {
        match *self {
            Run::Old { len, .. } | Run::New { len } => len,
        }
    }

    /// The one run `a` then `b` make, if they make one.
    fn join(a: Run, b: Run) -> Option<Run> {
        match (a, b) {
            (Run::New { len: x }, Run::New { len: y }) => Some(Run::New { len: x + y }),
            (
                Run::Old {
                    start,
                    len,
                    modified,
                },
                Run::Old {
                    start: s2,
                    len: l2,
                    modified: m2,
                },
            ) if start + len == s2 && modified == m2 => Some(Run::Old {
                start,
                len: len + l2,
                modified,
            }),
            _ => None,
        }
    }

    /// The first `at` elements and the rest.
    fn split(self, at: usize) -> (Run, Run) {
        match self {
            Run::Old {
                start,
                len,
                modified,
            } => (
                Run::Old {
                    start,
                    len: at,
                    modified,
                },
                Run::Old {
                    start: start + at,
                    len: len - at,
                    modified,
                },
            ),
            Run::New { len } => (Run::New { len: at }, Run::New { len: len - at }),
        }
    }
}

#[derive(Clone, Debug, Default)]
struct Chunk {
    runs: Vec<Run>,
    /// The number of elements in `runs`.
    len: usize,
}

/// Tracks one list's edits. See the module documentation.
#[derive(Clone, Debug)]
pub(crate) struct ListTracker {
    /// The list up to the tail, in chunks of runs; never holds an empty chunk or run.
    chunks: Vec<Chunk>,
    /// The number of elements in `chunks`.
    head: usize,
    /// The old index of the first element of the untouched tail; `None` once the list was
    /// cleared (nothing of the old list is left).
    tail: Option<usize>,
    /// Old indices of the elements removed.
    deleted: Vec<Range<usize>>,
}

impl Default for ListTracker {
    fn default() -> Self {
        ListTracker {
            chunks: Vec::new(),
            head: 0,
            tail: Some(0),
            deleted: Vec::new(),
        }
    }
}

impl ListTracker {
    /// An element was inserted at `index`.
    pub(crate) fn insert(&mut self, index: usize) {
        self.put(index, Run::New { len: 1 });
    }

    /// The element at `index` was removed.
    pub(crate) fn erase(&mut self, index: usize) {
        if let Some(Run::Old { start, .. }) = self.take(index) {
            self.deleted.push(start..start + 1);
        }
    }

    /// The element at `index` was set.
    pub(crate) fn modify(&mut self, index: usize) {
        match self.take(index) {
            Some(Run::Old { start, .. }) => {
                let run = Run::Old {
                    start,
                    len: 1,
                    modified: true,
                };
                self.put(index, run);
            }
            // A new element is reported as inserted whatever happens to its value.
            Some(new) => self.put(index, new),
            None => {}
        }
    }

    /// The element at `from` was moved to `to`.
    pub(crate) fn move_to(&mut self, from: usize, to: usize) {
        if let Some(run) = self.take(from) {
            self.put(to, run);
        }
    }

    /// Every element was removed; the list had `len` elements.
    pub(crate) fn clear(&mut self, len: usize) {
        if let Some(tail) = self.tail.take() {
            let n = len.saturating_sub(self.head);
            self.deleted.push(tail..tail + n);
        }
        for chunk in self.chunks.drain(..) {
            for run in chunk.runs {
                if let Run::Old { start, len, .. } = run {
                    self.deleted.push(start..start + len);
                }
            }
        }
        self.head = 0;
    }

    /// The changes so far.
    pub(crate) fn changes(&self) -> ListChanges {
        let mut insertions = Vec::new();
        let mut modifications = Vec::new();
        // Old runs: (old start, length, modified, new start).
        let mut old = Vec::new();
        let mut at = 0;
        for run in self.chunks.iter().flat_map(|c| &c.runs) {
            match *run {
                Run::New { len } => insertions.push(at..at + len),
                Run::Old {
                    start,
                    len,
                    modified,
                } => old.push((start, len, modified, at)),
            }
            at += run.len();
        }
        let keep = stay_in_place(&old);
        let mut moves = Vec::new();
        for (&(start, len, modified, to), stays) in old.iter().zip(keep) {
            if modified {
                modifications.push(to..to + len);
            }
            if !stays {
                moves.extend((0..len).map(|j| Move {
                    from: start + j,
                    to: to + j,
                }));
            }
        }
        ListChanges {
            deletions: IndexSet::from_ranges(self.deleted.clone()),
            insertions: IndexSet::from_ranges(insertions),
            modifications: IndexSet::from_ranges(modifications),
            moves,
        }
    }

    /// Moves `n` elements from the tail to the end of the head.
    fn grow_head(&mut self, n: usize) {
        let Some(tail) = self.tail else { return };
        if n == 0 {
            return;
        }
        self.tail = Some(tail + n);
        let run = Run::Old {
            start: tail,
            len: n,
            modified: false,
        };
        match self.chunks.last_mut() {
            Some(chunk) => {
                let at = chunk.runs.len();
                self.splice(self.chunks.len() - 1, at..at, &[run]);
            }
            None => self.chunks.push(Chunk {
                runs: vec![run],
                len: n,
            }),
        }
        self.head += n;
    }

    /// The chunk, the run in it and the offset in the run of element `index` of the head.
    fn locate(&self, mut index: usize) -> Option<(usize, usize, usize)> {
        for (c, chunk) in self.chunks.iter().enumerate() {
            if index >= chunk.len {
                index -= chunk.len;
                continue;
            }
            for (r, run) in chunk.runs.iter().enumerate() {
                if index < run.len() {
                    return Some((c, r, index));
                }
                index -= run.len();
            }
        }
        None
    }

    /// Removes the element at `index` and returns it as a run of one. `None` for an index past
    /// the list (which a store never reports).
    fn take(&mut self, index: usize) -> Option<Run> {
        if index >= self.head {
            self.grow_head(index + 1 - self.head);
        }
        let (c, r, offset) = self.locate(index)?;
        let run = self.chunks[c].runs[r];
        let (before, rest) = run.split(offset);
        let (one, after) = rest.split(1);
        let keep: Vec<Run> = [before, after]
            .into_iter()
            .filter(|r| r.len() > 0)
            .collect();
        self.splice(c, r..r + 1, &keep);
        self.head -= 1;
        Some(one)
    }

    /// Inserts `run` (of one element) so that it is at `index`.
    fn put(&mut self, index: usize, run: Run) {
        if index > self.head {
            self.grow_head(index - self.head);
        }
        let Some((c, r, offset)) = self.locate(index) else {
            // At the end of the head.
            let c = self.chunks.len().saturating_sub(1);
            if self.chunks.is_empty() {
                self.chunks.push(Chunk::default());
            }
            let at = self.chunks[c].runs.len();
            self.splice(c, at..at, &[run]);
            self.head += 1;
            return;
        };
        let here = self.chunks[c].runs[r];
        let (before, after) = here.split(offset);
        let parts: Vec<Run> = [before, run, after]
            .into_iter()
            .filter(|r| r.len() > 0)
            .collect();
        self.splice(c, r..r + 1, &parts);
        self.head += 1;
    }

    /// Replaces `range` of chunk `c`'s runs with `runs`, joining runs that make one, keeping
    /// the chunk's length, dropping it if empty and splitting it if too long.
    fn splice(&mut self, c: usize, range: Range<usize>, runs: &[Run]) {
        let chunk = &mut self.chunks[c];
        let removed: usize = chunk.runs[range.clone()].iter().map(Run::len).sum();
        let added: usize = runs.iter().map(Run::len).sum();
        chunk.len = chunk.len + added - removed;
        // Join with the neighbours on both sides too.
        let from = range.start.saturating_sub(1);
        let to = (range.end + 1).min(chunk.runs.len());
        let mut joined: Vec<Run> = Vec::with_capacity(to - from + runs.len());
        let left = (from < range.start).then(|| chunk.runs[from]);
        let right = (range.end < to).then(|| chunk.runs[range.end]);
        for run in left.into_iter().chain(runs.iter().copied()).chain(right) {
            match joined.last_mut().and_then(|last| Run::join(*last, run)) {
                Some(one) => *joined.last_mut().expect("joined with the last") = one,
                None => joined.push(run),
            }
        }
        chunk.runs.splice(from..to, joined);
        if chunk.runs.is_empty() {
            self.chunks.remove(c);
        } else if chunk.runs.len() > CHUNK_RUNS {
            let runs = chunk.runs.split_off(chunk.runs.len() / 2);
            let len = runs.iter().map(Run::len).sum();
            chunk.len -= len;
            self.chunks.insert(c + 1, Chunk { runs, len });
        }
    }
}

/// Which of the old runs (old start, length, _, _), in their new order, stay in place: a
/// heaviest subsequence increasing in old start (each run weighs its length), so that as few
/// elements as possible are reported as moved. O(n log n) with a Fenwick tree of prefix maxima
/// over the ranks of the old starts.
fn stay_in_place(old: &[(usize, usize, bool, usize)]) -> Vec<bool> {
    if old.windows(2).all(|w| w[0].0 < w[1].0) {
        return vec![true; old.len()];
    }
    let mut by_start: Vec<usize> = (0..old.len()).collect();
    by_start.sort_unstable_by_key(|&i| old[i].0);
    let mut rank = vec![0; old.len()];
    for (r, &i) in by_start.iter().enumerate() {
        rank[i] = r + 1;
    }
    // tree[r]: the best (weight, run) among ranks covered by r.
    let mut tree: Vec<(usize, usize)> = vec![(0, usize::MAX); old.len() + 1];
    let mut prev = vec![usize::MAX; old.len()];
    let mut best = (0, usize::MAX);
    for (i, &(_, len, _, _)) in old.iter().enumerate() {
        let mut below = (0, usize::MAX);
        let mut r = rank[i] - 1;
        while r > 0 {
            below = below.max(tree[r]);
            r &= r - 1;
        }
        prev[i] = below.1;
        let mine = (below.0 + len, i);
        best = best.max(mine);
        let mut r = rank[i];
        while r < tree.len() {
            tree[r] = tree[r].max(mine);
            r += r & r.wrapping_neg();
        }
    }
    let mut keep = vec![false; old.len()];
    let mut i = best.1;
    while i != usize::MAX {
        keep[i] = true;
        i = prev[i];
    }
    keep
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The one range of a set that has one.
    fn only(set: &IndexSet) -> Option<Range<usize>> {
        match set.ranges() {
            [r] => Some(r.clone()),
            _ => None,
        }
    }

    /// Applies `changes` to `old` as a table view would, taking inserted and modified elements
    /// from `new`.
    fn animate(old: &[i64], changes: &ListChanges, new: &[i64]) -> Vec<i64> {
        let mut gone: Vec<usize> = changes.deletions.iter().collect();
        gone.extend(changes.moves.iter().map(|m| m.from));
        gone.sort_unstable();
        let mut list = old.to_vec();
        for i in gone.into_iter().rev() {
            list.remove(i);
        }
        let mut arriving: Vec<(usize, i64)> =
            changes.insertions.iter().map(|i| (i, new[i])).collect();
        arriving.extend(changes.moves.iter().map(|m| (m.to, old[m.from])));
        arriving.sort_unstable();
        for (i, v) in arriving {
            list.insert(i, v);
        }
        for i in changes.modifications.iter() {
            list[i] = new[i];
        }
        list
    }

    /// The list and a tracker, edited together.
    struct Both {
        old: Vec<i64>,
        list: Vec<i64>,
        tracker: ListTracker,
        next: i64,
    }

    impl Both {
        fn new(n: i64) -> Both {
            let old: Vec<i64> = (0..n).collect();
            Both {
                list: old.clone(),
                old,
                tracker: ListTracker::default(),
                next: 1000,
            }
        }
        fn insert(&mut self, i: usize) {
            self.next += 1;
            self.list.insert(i, self.next);
            self.tracker.insert(i);
        }
        fn erase(&mut self, i: usize) {
            self.list.remove(i);
            self.tracker.erase(i);
        }
        fn set(&mut self, i: usize) {
            self.next += 1;
            self.list[i] = self.next;
            self.tracker.modify(i);
        }
        fn mv(&mut self, from: usize, to: usize) {
            let v = self.list.remove(from);
            self.list.insert(to, v);
            self.tracker.move_to(from, to);
        }
        fn clear(&mut self) {
            self.tracker.clear(self.list.len());
            self.list.clear();
        }
        fn check(&self) -> ListChanges {
            let changes = self.tracker.changes();
            assert_eq!(animate(&self.old, &changes, &self.list), self.list);
            changes
        }
    }

    #[test]
    fn single_edits_report_one_index() {
        let mut b = Both::new(5);
        b.insert(2);
        assert_eq!(only(&b.check().insertions), Some(2..3));
        let mut b = Both::new(5);
        b.erase(3);
        let c = b.check();
        assert_eq!((only(&c.deletions), c.insertions.len()), (Some(3..4), 0));
        let mut b = Both::new(5);
        b.set(4);
        assert_eq!(only(&b.check().modifications), Some(4..5));
    }

    #[test]
    fn a_move_is_one_move() {
        let mut b = Both::new(3);
        b.mv(0, 2);
        assert_eq!(b.check().moves, [Move { from: 0, to: 2 }]);
        let mut b = Both::new(6);
        b.mv(5, 0);
        let c = b.check();
        assert_eq!(c.moves, [Move { from: 5, to: 0 }]);
        assert!(c.deletions.is_empty() && c.insertions.is_empty());
    }

    #[test]
    fn a_moved_and_set_element_is_moved_and_modified() {
        let mut b = Both::new(4);
        b.set(1);
        b.mv(1, 3);
        let c = b.check();
        assert_eq!(c.moves, [Move { from: 1, to: 3 }]);
        assert_eq!(only(&c.modifications), Some(3..4));
    }

    #[test]
    fn new_elements_stay_insertions() {
        let mut b = Both::new(2);
        b.insert(1);
        b.set(1);
        b.mv(1, 0);
        let c = b.check();
        assert_eq!(only(&c.insertions), Some(0..1));
        assert!(c.modifications.is_empty() && c.moves.is_empty());
        b.erase(0);
        assert!(b.check().is_empty());
    }

    #[test]
    fn clearing_deletes_the_whole_old_list() {
        let mut b = Both::new(5);
        b.erase(1);
        b.insert(0);
        b.clear();
        b.insert(0);
        let c = b.check();
        assert_eq!(only(&c.deletions), Some(0..5));
        assert_eq!(only(&c.insertions), Some(0..1));
    }

    #[test]
    fn typing_and_deleting_keep_few_runs() {
        let mut b = Both::new(100);
        for i in 0..1000 {
            b.insert(50 + i);
        }
        for _ in 0..30 {
            b.erase(10);
        }
        assert!(b.tracker.chunks.iter().map(|c| c.runs.len()).sum::<usize>() <= 4);
        let c = b.check();
        assert_eq!(only(&c.insertions), Some(20..1020));
        assert_eq!(only(&c.deletions), Some(10..40));
    }

    #[derive(Clone, Debug)]
    enum Edit {
        Insert(usize),
        Erase(usize),
        Set(usize),
        Move(usize, usize),
        Clear,
    }

    fn edit() -> impl Strategy<Value = Edit> {
        let i = any::<usize>;
        prop_oneof![
            4 => i().prop_map(Edit::Insert),
            2 => i().prop_map(Edit::Erase),
            2 => i().prop_map(Edit::Set),
            2 => (i(), i()).prop_map(|(a, b)| Edit::Move(a, b)),
            1 => Just(Edit::Clear),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Random edits of every kind: the changes always animate the old list into the new
        /// one.
        #[test]
        fn random_edits_animate_exactly(n in 0i64..40, edits in prop::collection::vec(edit(), 0..300)) {
            let mut b = Both::new(n);
            for e in edits {
                let n = b.list.len();
                match e {
                    Edit::Insert(i) => b.insert(i % (n + 1)),
                    Edit::Erase(i) if n > 0 => b.erase(i % n),
                    Edit::Set(i) if n > 0 => b.set(i % n),
                    Edit::Move(i, j) if n > 0 => b.mv(i % n, j % n),
                    Edit::Clear => b.clear(),
                    _ => {}
                }
            }
            b.check();
        }
    }

    /// Edits all over a long list: many runs, many chunks, split and dropped.
    #[test]
    fn many_chunks_animate_exactly() {
        let mut b = Both::new(3000);
        for i in 0..1500 {
            b.insert(2 * i);
            b.set(2 * i + 1);
        }
        assert!(b.tracker.chunks.len() > 10);
        for i in (0..1000).rev() {
            let n = b.list.len();
            b.mv(3 * i, (4000 - i) % n);
            b.erase(i);
        }
        b.check();
    }

    #[test]
    fn the_fewest_elements_move() {
        // Old runs by new position: [5..8, 0..5, 8..10]: keeping 0..5 and 8..10 moves three.
        let old = [(5, 3, false, 0), (0, 5, false, 3), (8, 2, false, 8)];
        assert_eq!(stay_in_place(&old), [false, true, true]);
        let old = [
            (3, 1, false, 0),
            (0, 1, false, 1),
            (1, 1, false, 2),
            (2, 1, false, 3),
        ];
        assert_eq!(stay_in_place(&old), [false, true, true, true]);
    }

    #[test]
    fn index_sets_merge_and_serialize() {
        let set = IndexSet::from_ranges(vec![5..7, 0..2, 2..3, 6..9, 4..4]);
        assert_eq!(set.ranges(), [0..3, 5..9]);
        assert_eq!(serde_json::to_string(&set).unwrap(), "[[0,3],[5,9]]");
        assert_eq!(set.iter().next_back(), Some(8));
    }
}
