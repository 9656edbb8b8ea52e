//! Binary encoding of changesets (being written).
