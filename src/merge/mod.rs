//! The merge: merging two concurrent sequences of changesets so that applying either one
//! after the other gives the same state.
//!
//! `merge(a, b)` takes two sequences made concurrently on the same base state and rewrites both
//! in place: afterwards `base + a + b'` equals `base + b + a'`. It is the classic OT grid: every
//! instruction of `a`, in order, meets every instruction of `b`, in order, and each meeting is
//! decided by `merge_pair`, the single place that holds the rule for every pair of instruction
//! kinds (spec/semantics.md has the table with the reasons).
//!
//! Only instructions that can interact ever meet. Each instruction marks the places it works in
//! (object, property, list element, link target, type) and covers the places whose every
//! instruction it must meet (`Role`); one side is indexed by both, and the other side's
//! instructions look up only what they cover or mark. Instructions on different objects, or
//! different fields, or inserts into one list, are never compared, and touches of objects only
//! one side can name (engine ids the other side's spans rule out) are not even indexed, so
//! merging disjoint work costs about a pass over each side. Because a grid cell depends only on
//! the cell to its left and the cell above, visiting only the interacting cells in row order
//! gives exactly the result of the full grid.
//!
//! Transformation never changes an instruction's kind: it adjusts values (a set absorbs a later
//! concurrent add_int), shrinks a clear's object list, and lowers fates (see [`Fate`]). List
//! positions need no rewriting at all: list instructions name elements by id, and each replica's
//! list metadata turns ids into indices when it applies them.

//!
//! - `touch`: what each instruction touches and how (the mark/cover relation);
//! - `index`: one side's instructions by touch, and the engine-id spans that keep disjoint work
//!   out of the index;
//! - `rules`: `merge_pair`, the rule for every pair of instructions that meet.
//!
//! The server's history index uses the same touches to find the entries an upload can meet, and
//! `interacts` finds, as the merge would, whether merging two sides would change anything at all,
//! so that client and server can skip a merge, and copying what it would rewrite, when not.

mod index;
mod rules;
mod touch;

pub(crate) use touch::{link_write, touch_hashes, TouchHash};

use crate::model::{Changeset, Error, Fate, Instruction, Schema};
use index::{Indexed, Pos, Spans};
use rules::{inert, merge_pair, LinkDefinitions, Links};
use smallvec::SmallVec;
use touch::touches;

fn count(side: &[Changeset]) -> usize {
    side.iter().map(|cs| cs.ops.len()).sum()
}

/// Merges two concurrent sequences of changesets in place (see the module documentation).
///
/// `schema` is the schema of the replica doing the merge; it resolves link targets. Fails with
/// [`Error::SchemaMismatch`] when the two sides define a type or property incompatibly; the
/// sequences may then be partly transformed and must be discarded.
pub fn merge(a: &mut [Changeset], b: &mut [Changeset], schema: &Schema) -> Result<(), Error> {
    // An empty side meets nothing (the walk would index it and stop); surveying the other
    // side is what a server pays for every upload with no concurrent entry.
    if count(a) == 0 || count(b) == 0 {
        return Ok(());
    }
    let mut extra = LinkDefinitions::new();
    let spans = [
        Spans::survey(&*a, &mut extra),
        Spans::survey(&*b, &mut extra),
    ];
    let links = Links { schema, extra };
    // Either side may be the one indexed: visiting cells row by row or column by column gives
    // the same grid. Indexing costs more than looking up, so index the smaller side.
    if count(a) <= count(b) {
        walk((b, &spans[1]), (a, &spans[0]), &links)
    } else {
        walk((a, &spans[0]), (b, &spans[1]), &links)
    }
}

/// Visits the grid row by row: each instruction of `rows`, in order, meets the instructions of
/// `cols` it interacts with, in order.
fn walk(
    (rows, row_spans): (&mut [Changeset], &Spans),
    (cols, col_spans): (&mut [Changeset], &Spans),
    links: &Links<'_>,
) -> Result<(), Error> {
    let idx = Indexed::of(cols, row_spans);
    if idx.is_empty() {
        return Ok(());
    }
    let mut cands: SmallVec<[Pos; 8]> = SmallVec::new();
    for cs in rows.iter_mut() {
        let key_r = cs.key();
        for x in cs.ops.iter_mut() {
            if x.fate == Fate::Void {
                continue;
            }
            meeting(&x.instr, (&idx, col_spans), &mut cands);
            if cands.is_empty() {
                continue;
            }
            cands.sort_unstable();
            cands.dedup();
            for &(c, o) in cands.iter() {
                let other = &mut cols[c as usize];
                let key_c = other.key();
                merge_pair(x, key_r, &mut other.ops[o as usize], key_c, links)?;
            }
        }
    }
    Ok(())
}

/// The positions in the indexed side (`cols`, with its spans) of the instructions `instr`
/// meets, into `out` (emptied first).
fn meeting(
    instr: &Instruction,
    (idx, col_spans): (&Indexed, &Spans),
    out: &mut SmallVec<[Pos; 8]>,
) {
    out.clear();
    touches(instr, |t, role| {
        if col_spans.may_meet(t) {
            idx.meeting(t.digest(), role, out)
        }
    });
}

/// Whether merging `incoming` with `local` would change either of them or fail: whether an
/// instruction of one meets an instruction of the other, found as [`merge`] finds the meetings,
/// in a pair the rules do not leave as it is. Otherwise the merge leaves both sides exactly as
/// they are, so a caller can skip it, and with it copying `incoming` to be rewritten in place.
/// `local` is the side indexed.
pub(crate) fn interacts<'c, I>(incoming: I, local: &[Changeset]) -> bool
where
    I: IntoIterator<Item = &'c Changeset> + Clone,
{
    // Nothing meets an empty side, and surveying the other side is most of the cost: a server
    // integrating a writer's own changesets sees no concurrent entry at all.
    let busy = |cs: &Changeset| !cs.ops.is_empty();
    if !local.iter().any(busy) || !incoming.clone().into_iter().any(busy) {
        return false;
    }
    let mut links = LinkDefinitions::new();
    let local_spans = Spans::survey(local, &mut links);
    // The incoming spans only rule out local touches of engine ids. A local side without any
    // (a client's unacknowledged commit on objects with primary keys, the usual case) indexes
    // the same without them, and the survey of a large download is then saved.
    let incoming_spans = match local_spans.is_empty() {
        true => Spans::none(),
        false => Spans::survey(incoming.clone(), &mut links),
    };
    let idx = Indexed::of(local, &incoming_spans);
    if idx.is_empty() {
        return false;
    }
    let mut cands: SmallVec<[Pos; 8]> = SmallVec::new();
    (incoming.into_iter().flat_map(|cs| &cs.ops))
        .filter(|x| x.fate != Fate::Void)
        .any(|x| {
            meeting(&x.instr, (&idx, &local_spans), &mut cands);
            (cands.iter()).any(|&(c, o)| !inert(&x.instr, &local[c as usize].ops[o as usize].instr))
        })
}
