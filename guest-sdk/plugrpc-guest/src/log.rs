//! Logging into the host's log, where every line is tagged with the plugin's name; through
//! the standard `wasi:logging` import, so other hosts can take the same lines.

use crate::bindings::wasi::logging::logging::{Level, log};

/// Writes a trace-level line.
pub fn trace(message: &str) {
    log(Level::Trace, "", message);
}

/// Writes a debug-level line.
pub fn debug(message: &str) {
    log(Level::Debug, "", message);
}

/// Writes an info-level line.
pub fn info(message: &str) {
    log(Level::Info, "", message);
}

/// Writes a warn-level line.
pub fn warn(message: &str) {
    log(Level::Warn, "", message);
}

/// Writes an error-level line.
pub fn error(message: &str) {
    log(Level::Error, "", message);
}
