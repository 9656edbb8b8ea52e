//! Where a list element's position hangs in its list's merge tree.
//!
//! List inserts and moves carry a [`Place`]: the side of a parent node (another element's
//! position, or the list's virtual root). Every replica registers the position under that
//! parent, so replicas that received the same inserts in any order agree on the document order
//! (the tree rule is in the list merge metadata, `replica::list`).

use super::ids::OpId;
use serde::{Deserialize, Serialize};

/// Which side of its parent a node hangs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Side {
    /// Before the parent in document order.
    Left,
    /// After the parent in document order.
    Right,
}

/// Where a new node hangs in the tree: the side of a parent node.
///
/// ```
/// use objsync::{OpId, PeerId, Place, Side};
///
/// // After the element that peer 1 inserted with its 3rd id.
/// let after = Place { parent: Some(OpId { peer: PeerId(1), seq: 3 }), side: Side::Right };
/// // At the very front of the list.
/// let front = Place::root();
/// assert_ne!(after, front);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Place {
    /// The parent node's id; `None` is the virtual root, which only has right children.
    pub parent: Option<OpId>,
    /// The side of the parent.
    pub side: Side,
}

impl Place {
    /// The right side of the virtual root: the front of the list, where the first insert into an
    /// empty list goes.
    pub fn root() -> Place {
        Place {
            parent: None,
            side: Side::Right,
        }
    }
}
