//! The cause carried by the engine's errors ([`StoreError`](crate::StoreError),
//! [`SinkError`](crate::SinkError), [`SourceError`](crate::SourceError)): the underlying
//! error itself, not its text, so a caller can walk the `source()` chain or downcast it.

use std::error::Error;
use std::fmt;
use std::sync::Arc;

/// An error's cause: any error, or a message. Shared, so the errors holding it stay `Clone`
/// (a handler's error is kept for its retries and its dead letter).
#[derive(Clone)]
pub struct Cause(Arc<dyn Error + Send + Sync>);

impl Cause {
    /// Wraps `cause`: an error, or a message (`&str`, `String`) that becomes one.
    pub fn new(cause: impl Into<Box<dyn Error + Send + Sync>>) -> Self {
        Self(Arc::from(cause.into()))
    }

    /// The underlying error, for `downcast_ref`.
    pub fn get(&self) -> &(dyn Error + Send + Sync + 'static) {
        &*self.0
    }
}

impl fmt::Debug for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl Error for Cause {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.0.source()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_error_and_its_text() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let cause = Cause::new(io);
        assert_eq!(cause.to_string(), "refused");
        let io = cause.get().downcast_ref::<std::io::Error>().unwrap();
        assert_eq!(io.kind(), std::io::ErrorKind::ConnectionRefused);
        assert_eq!(Cause::new("plain words").to_string(), "plain words");
    }
}
