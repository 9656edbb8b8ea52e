//! Change notifications: what changed in the parts of a replica an application observes, in
//! the shape its views need (objects inserted, deleted and modified per type, and per list the
//! indices a table view animates).
//!
//! The replica reports every store-level effect of applying an instruction, local or merged,
//! to its `Recorder` as an `Event`, but only for what is observed: observing is opt-in, per
//! type or per object ([`Observe`]), and an effect on something nothing observes costs one
//! check (with nothing observed at all, one test of a flag). Because effects are what the
//! replica actually did after merging, a downloaded write that lost a conflict reports nothing.
//!
//! Events of an atomic unit that is rolled back are dropped with it; when the outermost unit
//! commits, they are folded into [`Changes`] (`changes`), which accumulate until taken
//! ([`crate::Replica::take_changes`], [`crate::sync::Client::take_changes`]). List changes are
//! tracked by `list`, at a cost that follows the edits, not the lists' lengths.
//!
//! The Adapter feed ([`crate::feed`]) uses the same recorder in its other mode: everything
//! observed, values kept, and the events handed out in order instead of folded.
//!
//! ```
//! use objsync::observe::{Move, Observe};
//! use objsync::sync::Client;
//! use objsync::{ObjectType, PeerId, PropType, Property};
//!
//! let mut client = Client::new(PeerId(1));
//! client.observe(Observe::ty("Person"));
//! client.write(1, |tx| {
//!     tx.add_type(ObjectType::new("Person", Some("id"), [
//!         Property::new("id", PropType::parse("int")?),
//!         Property::new("tags", PropType::parse("list<string>")?),
//!     ])?)?;
//!     tx.insert("Person", 1)?;
//!     for (i, tag) in ["a", "b", "c"].into_iter().enumerate() {
//!         tx.list_insert("Person", 1, "tags", i, tag)?;
//!     }
//!     Ok(())
//! })?;
//! let people = client.take_changes().of("Person").cloned().unwrap_or_default();
//! assert!(people.created);
//! assert_eq!(people.inserted, [1.into()]);
//!
//! client.write(2, |tx| tx.list_move("Person", 1, "tags", 0, 2))?;
//! let changes = client.take_changes();
//! let ada = changes.of("Person").and_then(|t| t.object(&1.into())).expect("modified");
//! assert_eq!(&*ada.properties, ["tags".into()]);
//! assert_eq!(ada.list("tags").map(|l| &*l.moves), Some(&[Move { from: 0, to: 2 }][..]));
//! assert!(client.take_changes().is_empty());
//! # Ok::<(), objsync::Error>(())
//! ```

mod changes;
mod event;
mod list;

pub use changes::{Changes, ObjectChanges, TypeChanges};
pub(crate) use event::Event;
pub use list::{IndexSet, ListChanges, Move};

use crate::model::{Name, ObjKey, ObjRef, Value};
use changes::Pending;
use hashbrown::HashSet;

/// Something to observe: every object of a type, or one object.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Observe {
    /// Every object of the type with this name (which need not exist yet), and the type's
    /// schema.
    Type(Name),
    /// One object (which need not exist yet).
    Object(ObjRef),
}

impl Observe {
    /// Every object of type `ty`.
    pub fn ty(ty: &str) -> Observe {
        Observe::Type(ty.into())
    }

    /// The object `ty[key]`.
    pub fn object(ty: &str, key: impl Into<ObjKey>) -> Observe {
        Observe::Object(ObjRef::new(ty, key))
    }
}

/// What a replica reports its effects to. See the module documentation.
#[derive(Debug, Default)]
pub(crate) struct Recorder {
    /// Whether anything is observed: the one test made when nothing is.
    active: bool,
    /// Everything is observed and effects keep their values and are not folded (the feed).
    effects: bool,
    types: HashSet<Name>,
    /// `types` as a vector while it is short: comparing a few short names costs less than
    /// hashing one.
    few_types: Vec<Name>,
    objects: HashSet<ObjRef>,
    /// Events of the open units (and, for the feed, everything not yet handed out).
    log: Vec<Event>,
    /// The number of open units.
    depth: usize,
    /// For each unit open since something is observed, the length of `log` when it began
    /// (units opened before that have no events to drop).
    marks: Vec<usize>,
    pending: Pending,
}

impl Recorder {
    /// Starts observing `what`; returns whether it was not observed yet.
    pub(crate) fn observe(&mut self, what: Observe) -> bool {
        let added = match what {
            Observe::Type(ty) => self.types.insert(ty),
            Observe::Object(obj) => self.objects.insert(obj),
        };
        self.list_few_types();
        self.activate();
        added
    }

    /// Keeps `few_types` the list of `types` while there are few.
    fn list_few_types(&mut self) {
        const FEW: usize = 8;
        self.few_types.clear();
        if self.types.len() <= FEW {
            self.few_types.extend(self.types.iter().cloned());
        }
    }

    /// From now on effects are recorded, in the units open now too.
    fn activate(&mut self) {
        if !self.active {
            self.marks.resize(self.depth, self.log.len());
        }
        self.active = true;
    }

    /// Stops observing `what`; returns whether it was observed. Changes already recorded stay
    /// until taken.
    pub(crate) fn unobserve(&mut self, what: &Observe) -> bool {
        let removed = match what {
            Observe::Type(ty) => self.types.remove(ty),
            Observe::Object(obj) => self.objects.remove(obj),
        };
        self.list_few_types();
        self.active = self.effects || !self.types.is_empty() || !self.objects.is_empty();
        removed
    }

    /// Switches to the feed's mode: everything observed, values kept, events handed out by
    /// [`Recorder::take_events`].
    pub(crate) fn record_effects(&mut self) {
        self.effects = true;
        self.activate();
    }

    /// Whether anything is observed.
    #[inline(always)]
    pub(crate) fn active(&self) -> bool {
        self.active
    }

    /// Whether effects on `obj` are observed. Inlined down to the test of `active`, so that
    /// observing nothing costs a load and a branch where an effect happens.
    #[inline(always)]
    pub(crate) fn watches(&self, obj: &ObjRef) -> bool {
        self.active && self.watches_active(obj)
    }

    #[inline(never)]
    fn watches_active(&self, obj: &ObjRef) -> bool {
        self.effects
            || self.observes_type(&obj.ty)
            || (!self.objects.is_empty() && self.objects.contains(obj))
    }

    /// Whether schema changes of type `ty` are observed.
    #[inline(always)]
    pub(crate) fn watches_type(&self, ty: &str) -> bool {
        self.active && (self.effects || self.observes_type(ty))
    }

    /// Whether type `ty` is observed.
    #[inline]
    fn observes_type(&self, ty: &str) -> bool {
        match self.few_types.is_empty() {
            false => self.few_types.iter().any(|t| **t == *ty),
            true => !self.types.is_empty() && self.types.contains(ty),
        }
    }

    /// Whether events carry values.
    pub(crate) fn keeps_values(&self) -> bool {
        self.effects
    }

    /// `value`, if events carry values.
    pub(crate) fn keep(&self, value: &Value) -> Option<Value> {
        self.effects.then(|| value.clone())
    }

    /// Records an effect on something observed.
    pub(crate) fn push(&mut self, event: Event) {
        self.log.push(event);
    }

    /// Records an effect, if there is one.
    pub(crate) fn push_some(&mut self, event: Option<Event>) {
        self.log.extend(event);
    }

    /// An atomic unit began.
    #[inline(always)]
    pub(crate) fn begin(&mut self) {
        self.depth += 1;
        if self.active {
            self.marks.push(self.log.len());
        }
    }

    /// The innermost unit committed; the outermost folds its events into the changes.
    #[inline(always)]
    pub(crate) fn commit(&mut self) {
        self.depth = self.depth.saturating_sub(1);
        if self.marks.len() > self.depth {
            self.marks.pop();
        }
        if self.depth == 0 && !self.effects && !self.log.is_empty() {
            self.fold();
        }
    }

    /// The innermost unit rolled back: its events go.
    #[inline(always)]
    pub(crate) fn rollback(&mut self) {
        self.depth = self.depth.saturating_sub(1);
        if self.marks.len() > self.depth {
            if let Some(mark) = self.marks.pop() {
                self.log.truncate(mark);
            }
        }
    }

    /// Folds the events of committed units into the changes; those of units still open stay
    /// in the log, where a rollback can drop them.
    #[inline(never)]
    fn fold(&mut self) {
        let open = self.marks.first().copied().unwrap_or(self.log.len());
        for event in self.log.drain(..open) {
            self.pending.fold(event);
        }
        for mark in &mut self.marks {
            *mark -= open;
        }
    }

    /// The changes since they were last taken (what units still open did is not in them yet).
    pub(crate) fn take_changes(&mut self) -> Changes {
        self.fold();
        self.pending.take()
    }

    /// The events recorded since they were last taken, in order (the feed's mode).
    pub(crate) fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.log)
    }
}
