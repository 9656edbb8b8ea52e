//! The convergence check with permissions (spec/scenario-format.md): a client's state is
//! compared with the server's state as the client's user may read it, and a type without
//! objects counts as absent (a client keeps the schema it declared even where it may read
//! nothing).

use super::Malformed;
use objsync::json::state_json;
use objsync::permissions::{readable_objects, Identity};
use objsync::sync::Server;
use objsync::{Schema, Store};
use serde_json::{Map, Value as Json};

/// The server's state as `identity` may read it, without empty types.
pub fn readable_state(server: &Server, identity: &Identity) -> Result<Json, Malformed> {
    let store = server.replica().store();
    let state = state_json(store).map_err(|e| Malformed(e.to_string()))?;
    let Identity::User(user) = identity else {
        return Ok(without_empty_types(state));
    };
    let readable = readable_objects(store, Some(user));
    let Json::Object(types) = state else {
        return Ok(Json::Object(Map::new()));
    };
    let mut out = Map::new();
    for (ty, objects) in types {
        let Json::Object(objects) = objects else {
            continue;
        };
        let keys = store.objects(&ty).map_err(|e| Malformed(e.to_string()))?;
        let readable_keys: std::collections::HashSet<String> = (keys.into_iter())
            .filter(|key| readable.contains(&objsync::ObjRef::new(&ty, key.clone())))
            .map(|key| key.render())
            .collect();
        let kept: Map<String, Json> = (objects.into_iter())
            .filter(|(k, _)| readable_keys.contains(k))
            .collect();
        if !kept.is_empty() {
            out.insert(ty, Json::Object(kept));
        }
    }
    Ok(Json::Object(out))
}

/// A state without its types that have no objects.
pub fn without_empty_types(state: Json) -> Json {
    match state {
        Json::Object(types) => Json::Object(
            (types.into_iter())
                .filter(|(_, objects)| objects.as_object().map_or(true, |o| !o.is_empty()))
                .collect(),
        ),
        other => other,
    }
}

/// An expected client state without the types it expects empty that the client does not
/// have at all.
pub(super) fn present_types(expect: &Map<String, Json>, schema: &Schema) -> Map<String, Json> {
    (expect.iter())
        .filter(|(ty, objects)| {
            schema.contains(ty) || objects.as_object().map_or(true, |o| !o.is_empty())
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}
