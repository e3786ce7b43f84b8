//! Test-only plugin: version v2 of `versioned.v1.Versioned`.

/// What this version says it is.
const VERSION: &str = "v2";

include!("../../versioned.rs");
