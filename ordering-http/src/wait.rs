//! Start-up against dependencies that may not be up yet (a store whose server is still
//! starting): waited for, while anything a person must fix ends the start at once.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

/// The first wait between tries, doubled after each up to [`LONGEST_WAIT`].
const FIRST_WAIT: Duration = Duration::from_millis(250);
const LONGEST_WAIT: Duration = Duration::from_secs(5);

/// Calls `open` until it succeeds, or fails in a way `transient` says waiting cannot fix;
/// each wait is logged with `what` and `place` (which must hold no secret).
pub async fn open_when_up<T, E, F>(
    what: &str,
    place: &str,
    mut open: impl FnMut() -> F,
    transient: impl Fn(&E) -> bool,
) -> Result<T, E>
where
    E: Display,
    F: Future<Output = Result<T, E>>,
{
    let mut delay = FIRST_WAIT;
    loop {
        match open().await {
            Err(error) if transient(&error) => {
                tracing::warn!(store = %place, %error, ?delay, "waiting for the {what}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(LONGEST_WAIT);
            }
            opened => return opened,
        }
    }
}
