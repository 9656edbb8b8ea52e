//! The transactions the load generator commits, shared with the tests that check every one of
//! them arrived exactly once.

/// Writer `who`'s transaction `t` in the scenario format's JSON ops: an `Item` of its own
/// (`"{who}-{t}"`) and +1 on the shared `counter` item's `total`, so that a lost or doubled
/// changeset shows in the total. The first transaction also defines the type.
pub fn counted_transaction(who: usize, t: usize) -> String {
    let mut ops = Vec::new();
    if t == 0 {
        ops.push(
            serde_json::json!({"op": "add_type", "type": "Item", "primary_key": "id",
            "properties": {"id": "string", "n": "int", "total": "int"}}),
        );
    }
    ops.push(
        serde_json::json!({"op": "insert", "type": "Item", "pk": format!("{who}-{t}"),
        "values": {"n": t}}),
    );
    ops.push(serde_json::json!({"op": "insert", "type": "Item", "pk": "counter"}));
    ops.push(
        serde_json::json!({"op": "add_int", "type": "Item", "pk": "counter",
        "property": "total", "value": 1}),
    );
    serde_json::Value::Array(ops).to_string()
}
