//! Errors as one line: what the binary prints for a user's mistake and what a log line
//! holds when a reload is refused.

/// `error` and its causes in one line, each cause once: what went wrong, not where in
/// the code (errors that name their source in their own text are not repeated).
pub fn one_line(error: &(dyn std::error::Error + 'static)) -> String {
    let mut line = String::new();
    let mut cause = Some(error);
    while let Some(error) = cause {
        let text = error.to_string();
        if !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
        cause = error.source();
    }
    // Some causes (a compiler's) span lines: one line is what a terminal or a log reads.
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("reading plugrpc.toml")]
    struct Outer(#[source] std::io::Error);

    /// An error that names its cause in its own text.
    #[derive(Debug, thiserror::Error)]
    #[error("plugrpc.toml: {0}")]
    struct Naming(#[source] std::io::Error);

    #[test]
    fn causes_join_on_one_line_each_once() {
        let error = Outer(std::io::Error::other("no such\nfile"));
        assert_eq!(one_line(&error), "reading plugrpc.toml: no such file");
        let naming = Naming(std::io::Error::other("gone"));
        assert_eq!(one_line(&naming), "plugrpc.toml: gone");
    }
}
