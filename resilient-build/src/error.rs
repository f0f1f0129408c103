//! The errors a build script gets back.
//!
//! Every error is an [`io::Error`], as with prost-build and tonic-prost-build. A build
//! script's `main` that returns one has it printed with `Debug`, which for a plain string
//! escapes quotes and folds several problems onto one line with `\n`. The message here is
//! its own `Debug`, so the build log shows it as written.

use std::fmt;
use std::io;

/// An error message whose `Debug` is the message itself.
struct Message(String);

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Message {}

/// An error of `kind` that reads `message`, in `Display` and in `Debug`.
pub(crate) fn build_error(kind: io::ErrorKind, message: impl Into<String>) -> io::Error {
    io::Error::new(kind, Message(message.into()))
}

/// An invalid proto, option or builder setting.
pub(crate) fn invalid_input(message: impl Into<String>) -> io::Error {
    build_error(io::ErrorKind::InvalidInput, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_the_message_as_written() {
        let e = invalid_input("no service matches \".a.B\"\nsecond problem");
        assert_eq!(e.to_string(), "no service matches \".a.B\"\nsecond problem");
        assert_eq!(
            format!("{e:?}"),
            "Custom { kind: InvalidInput, error: no service matches \".a.B\"\nsecond problem }"
        );
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }
}
