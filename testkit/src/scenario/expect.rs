//! Comparing a final state with a scenario's `"expect"`: types named compare on their exact
//! set of objects, properties named by value (numbers numerically, decimals by value, keys in
//! either form).

use objsync::json::{key_from_json, value_from_json};
use objsync::{ObjectType, Schema};
use serde_json::{Map, Value as Json};

pub(super) fn compare(state: &Json, expect: &Map<String, Json>, schema: &Schema) -> Vec<String> {
    let mut findings = Vec::new();
    for (ty, objects) in expect {
        let Ok(def) = schema.get(ty) else {
            findings.push(format!("expect: type {ty} does not exist"));
            continue;
        };
        let actual = state
            .get(ty)
            .and_then(Json::as_object)
            .cloned()
            .unwrap_or_default();
        let Some(objects) = objects.as_object() else {
            continue;
        };
        let mut expected_keys = Vec::new();
        for (k, props) in objects {
            let key = match key_from_json(def, &Json::String(k.clone())) {
                Ok(key) => key,
                Err(e) => {
                    findings.push(format!("expect: {ty}[{k}]: {e}"));
                    continue;
                }
            };
            let rendered = key.render();
            expected_keys.push(rendered.clone());
            let Some(actual_obj) = actual.get(&rendered) else {
                findings.push(format!("expect: {ty}[{k}] is missing"));
                continue;
            };
            let Some(props) = props.as_object() else {
                continue;
            };
            for (prop, want) in props {
                let got = actual_obj.get(prop).cloned().unwrap_or(Json::Null);
                if !json_value_matches(schema, def, prop, want, &got) {
                    findings.push(format!(
                        "expect: {ty}[{k}].{prop}: expected {want}, got {got}"
                    ));
                }
            }
        }
        for k in actual.keys() {
            if !expected_keys.contains(k) {
                findings.push(format!("expect: {ty}[{k}] exists but is not expected"));
            }
        }
    }
    findings
}

/// Compares an expected JSON value with a rendered one by the property's type (numbers
/// numerically, decimals by value, keys in either form).
fn json_value_matches(
    schema: &Schema,
    def: &ObjectType,
    prop: &str,
    want: &Json,
    got: &Json,
) -> bool {
    let Ok(pt) = def.property(prop) else {
        return false;
    };
    let read = |j: &Json| value_from_json(schema, &def.name, prop, pt, j);
    if pt.list {
        match (want, got) {
            (Json::Array(a), Json::Array(b)) if a.len() == b.len() => a
                .iter()
                .zip(b)
                .all(|(x, y)| matches!((read(x), read(y)), (Ok(x), Ok(y)) if x.semantic_eq(&y))),
            _ => false,
        }
    } else {
        matches!((read(want), read(got)), (Ok(x), Ok(y)) if x.semantic_eq(&y))
    }
}
