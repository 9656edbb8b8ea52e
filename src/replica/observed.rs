//! Observing a replica: what is observed, the changes taken ([`crate::observe`]), and the
//! helpers `apply` and `lists` report effects through.

use super::Replica;
use crate::model::{Error, Name, ObjRef, Property, Schema, Value};
use crate::observe::{Changes, Event, Observe};
use crate::store::Store;

impl<S: Store> Replica<S> {
    /// Starts observing a type or an object: from now on, what changes in it is reported by
    /// [`Replica::take_changes`]. Returns whether it was not observed yet.
    ///
    /// Observing costs nothing where nothing is observed: an effect on anything else is one
    /// check.
    pub fn observe(&mut self, what: Observe) -> bool {
        self.recorder.observe(what)
    }

    /// Stops observing a type or an object; returns whether it was observed. Changes already
    /// recorded are still reported.
    pub fn unobserve(&mut self, what: &Observe) -> bool {
        self.recorder.unobserve(what)
    }

    /// What changed in the observed types and objects since the changes were last taken, by
    /// local transactions and merged changesets alike (see [`Changes`]). Loading a snapshot or
    /// starting from a server's state reports nothing.
    pub fn take_changes(&mut self) -> Changes {
        self.recorder.take_changes()
    }

    /// Records every effect, with its values, for [`Replica::take_effects`] (the feed).
    pub(crate) fn record_effects(&mut self) {
        self.recorder.record_effects();
    }

    /// The effects recorded since they were last taken, in the order they happened.
    pub(crate) fn take_effects(&mut self) -> Vec<Event> {
        self.recorder.take_events()
    }

    /// The effect of a schema change of `ty` (whose primary key, if it creates the type, is
    /// `primary_key`) that `plan` (a [`Schema`] planning method) says adds properties, if the
    /// type's schema is observed. Asked before the change is made.
    pub(super) fn schema_effect(
        &self,
        ty: &Name,
        primary_key: Option<&Name>,
        plan: impl FnOnce(&Schema) -> Result<Option<Vec<Property>>, Error>,
    ) -> Option<Event> {
        if !self.recorder.watches_type(ty) {
            return None;
        }
        let schema = self.store.schema();
        let created = !schema.contains(ty);
        let properties = plan(schema).ok().flatten()?;
        Some(Event::Schema {
            ty: ty.clone(),
            created,
            primary_key: primary_key.filter(|_| created).cloned(),
            properties,
        })
    }

    /// Reports that `obj` was created, if it is observed.
    #[inline(always)]
    pub(super) fn note_created(&mut self, obj: &ObjRef) {
        if self.recorder.watches(obj) {
            self.record_created(obj);
        }
    }

    #[inline(never)]
    fn record_created(&mut self, obj: &ObjRef) {
        let values = self.recorder.keeps_values().then(|| {
            let def = self.store.schema().get(&obj.ty).ok();
            (def.into_iter().flat_map(|d| d.properties.iter()))
                .filter(|(name, pt)| {
                    !pt.list && def.and_then(|d| d.primary_key.as_ref()) != Some(name)
                })
                .map(|(name, pt)| (name.clone(), pt.default_value()))
                .collect()
        });
        self.recorder.push(Event::Created {
            obj: obj.clone(),
            values,
        });
    }

    /// What to report of `value` written to `obj`, asked before the value moves into the
    /// store: `None` if `obj` is not observed, else the value if events keep values.
    #[inline(always)]
    pub(super) fn watch(&self, obj: &ObjRef, value: &Value) -> Option<Option<Value>> {
        self.recorder
            .watches(obj)
            .then(|| self.recorder.keep(value))
    }

    /// Reports an effect on an observed object (`event` is only made if `obj` is observed).
    #[inline(always)]
    pub(super) fn note(&mut self, obj: &ObjRef, event: impl FnOnce() -> Event) {
        if self.recorder.watches(obj) {
            self.recorder.push(event());
        }
    }
}
