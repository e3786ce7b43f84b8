//! Test-only plugin: version v1 of `versioned.v1.Versioned`.

/// What this version says it is.
const VERSION: &str = "v1";

include!("../../versioned.rs");
