//! A consumer of the Adapter feed (spec/feed.md) as plain as one can be: a state in the
//! scenario format's state JSON shape that feed items apply to, the way a connector applies
//! them to its tables. The feed's tests, and the scenario runner's `--feed` test, check that it
//! ends equal to the realm's state.

use objsync::feed::{Element, FeedInstruction, FeedItem};
use objsync::json::value_to_json;
use objsync::PropType;
use serde_json::{Map, Value as Json};
use std::collections::HashMap;

/// A type as the mirror knows it: its primary key and its properties.
#[derive(Debug, Clone, Default)]
struct Table {
    primary_key: Option<String>,
    properties: Vec<(String, PropType)>,
}

/// A realm's state rebuilt from its feed. See the module documentation.
#[derive(Debug, Clone, Default)]
pub struct Mirror {
    tables: HashMap<String, Table>,
    /// type -> rendered key -> property -> value, as `objsync::json::state_json` renders it.
    state: Map<String, Json>,
}

/// An object key in JSON rendered as the state JSON's object keys are.
fn render(identity: &Json) -> String {
    match identity {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn default_json(pt: &PropType) -> Json {
    if pt.list {
        Json::Array(Vec::new())
    } else {
        value_to_json(&pt.default_value())
    }
}

impl Mirror {
    /// An empty mirror.
    pub fn new() -> Mirror {
        Mirror::default()
    }

    /// The state, as `objsync::json::state_json` renders a store.
    pub fn state(&self) -> Json {
        Json::Object(self.state.clone())
    }

    /// Applies one feed item: a snapshot replaces everything, a transaction applies in order.
    pub fn apply(&mut self, item: &FeedItem) -> Result<(), String> {
        let instructions = match item {
            FeedItem::Snapshot(s) => {
                *self = Mirror::new();
                &s.instructions
            }
            FeedItem::Transaction(t) => &t.instructions,
        };
        for (i, instruction) in instructions.iter().enumerate() {
            self.instruction(instruction)
                .map_err(|e| format!("instruction {i} {instruction:?}: {e}"))?;
        }
        Ok(())
    }

    fn objects(&mut self, ty: &str) -> Result<&mut Map<String, Json>, String> {
        (self.state.get_mut(ty).and_then(Json::as_object_mut)).ok_or(format!("no type {ty}"))
    }

    fn object(&mut self, ty: &str, identity: &Json) -> Result<&mut Map<String, Json>, String> {
        let key = render(identity);
        (self
            .objects(ty)?
            .get_mut(&key)
            .and_then(Json::as_object_mut))
        .ok_or(format!("no object {ty}[{key}]"))
    }

    fn list(&mut self, ty: &str, identity: &Json, prop: &str) -> Result<&mut Vec<Json>, String> {
        (self
            .object(ty, identity)?
            .get_mut(prop)
            .and_then(Json::as_array_mut))
        .ok_or(format!("no list {prop}"))
    }

    fn instruction(&mut self, instruction: &FeedInstruction) -> Result<(), String> {
        let element = |e: &Element| match e {
            Element::Value(v) | Element::Object(v) => v.clone(),
        };
        match instruction {
            FeedInstruction::AddType {
                object_type,
                primary_key,
                properties,
            } => {
                let mut table = Table {
                    primary_key: primary_key.as_deref().map(str::to_string),
                    properties: Vec::new(),
                };
                for (name, p) in properties {
                    let pt = p.prop_type().map_err(|e| e.to_string())?;
                    table.properties.push((name.to_string(), pt));
                }
                if self.tables.insert(object_type.to_string(), table).is_some() {
                    return Err("the type exists".into());
                }
                self.state
                    .insert(object_type.to_string(), Json::Object(Map::new()));
            }
            FeedInstruction::AddProperties {
                object_type,
                properties,
            } => {
                let table = self.tables.get_mut(&**object_type).ok_or("no type")?;
                let mut added = Vec::new();
                for (name, p) in properties {
                    let pt = p.prop_type().map_err(|e| e.to_string())?;
                    table.properties.push((name.to_string(), pt.clone()));
                    added.push((name.to_string(), default_json(&pt)));
                }
                for o in self.objects(object_type)?.values_mut() {
                    let o = o.as_object_mut().ok_or("an object")?;
                    o.extend(added.iter().cloned());
                }
            }
            FeedInstruction::Insert {
                object_type,
                identity,
                values,
            } => {
                let table = self.tables.get(&**object_type).ok_or("no type")?;
                let mut o: Map<String, Json> = (table.properties.iter())
                    .filter(|(n, _)| table.primary_key.as_ref() != Some(n))
                    .map(|(n, pt)| (n.clone(), default_json(pt)))
                    .collect();
                for (prop, v) in values {
                    if o.insert(prop.to_string(), v.clone()).is_none() {
                        return Err(format!("no property {prop}"));
                    }
                }
                let key = render(identity);
                if self
                    .objects(object_type)?
                    .insert(key, Json::Object(o))
                    .is_some()
                {
                    return Err("the object exists".into());
                }
            }
            FeedInstruction::Set {
                object_type,
                identity,
                values,
            } => {
                let o = self.object(object_type, identity)?;
                for (prop, v) in values {
                    let slot = o.get_mut(&**prop).ok_or(format!("no property {prop}"))?;
                    *slot = v.clone();
                }
            }
            FeedInstruction::Delete {
                object_type,
                identity,
            } => {
                (self.objects(object_type)?.remove(&render(identity))).ok_or("no object")?;
            }
            FeedInstruction::ListInsert {
                object_type,
                identity,
                property,
                list_index,
                element: e,
            } => {
                let list = self.list(object_type, identity, property)?;
                if *list_index > list.len() {
                    return Err(format!("index {list_index} past {}", list.len()));
                }
                list.insert(*list_index, element(e));
            }
            FeedInstruction::ListSet {
                object_type,
                identity,
                property,
                list_index,
                element: e,
            } => {
                let list = self.list(object_type, identity, property)?;
                *list.get_mut(*list_index).ok_or("index out of range")? = element(e);
            }
            FeedInstruction::ListErase {
                object_type,
                identity,
                property,
                list_index,
            } => {
                let list = self.list(object_type, identity, property)?;
                if *list_index >= list.len() {
                    return Err(format!("index {list_index} past {}", list.len()));
                }
                list.remove(*list_index);
            }
            FeedInstruction::ListMove {
                object_type,
                identity,
                property,
                list_index,
                new_index,
            } => {
                let list = self.list(object_type, identity, property)?;
                if *list_index >= list.len() || *new_index >= list.len() {
                    return Err("index out of range".into());
                }
                let v = list.remove(*list_index);
                list.insert(*new_index, v);
            }
            FeedInstruction::ListClear {
                object_type,
                identity,
                property,
            } => self.list(object_type, identity, property)?.clear(),
        }
        Ok(())
    }
}
