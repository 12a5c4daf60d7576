//! [`Error`]: what a call to Redis can fail with. One type for the whole adapter, so callers
//! match on what happened (Redis away, a missing consumer group, an error reply, a reply of
//! the wrong shape) instead of on message texts. The messages reach operators (logs,
//! `/health`, `boltlinkctl status`), so each one reads alone.

use ::redis::{ErrorKind, RedisError};

use crate::clicks::ports::LogError;

/// A failed call to Redis.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An earlier call found Redis unreachable: until the supervisor's next successful ping,
    /// calls fail at once instead of waiting on timeouts. Nothing was sent.
    #[error("redis unavailable")]
    Unavailable,
    /// No connection has been made yet (the supervisor connects in the background).
    #[error("redis not connected")]
    NotConnected,
    /// No answer within the call's bound; Redis is now taken as unreachable.
    #[error("redis timed out")]
    Timeout,
    /// The connection failed: refused, dropped, or an I/O error or timeout underneath;
    /// Redis is now taken as unreachable.
    #[error(transparent)]
    Connection(RedisError),
    /// The click stream or one of its consumer groups does not exist (`NOGROUP`: Redis lost
    /// its data or started empty).
    #[error(transparent)]
    MissingGroup(RedisError),
    /// Redis answered with an error reply (`WRONGTYPE`, `BUSYGROUP`, a failing script, ...) or
    /// the client refused the command; Redis itself is reachable. [`Error::code`] gives the
    /// reply's code.
    #[error("{error}")]
    Command { kind: ErrorKind, error: RedisError },
    /// The reply did not have the expected shape.
    #[error("{0}")]
    BadReply(String),
}

impl Error {
    /// Classifies an error of the `redis` crate.
    pub fn from_redis(error: RedisError) -> Self {
        if error.is_io_error()
            || error.is_connection_dropped()
            || error.is_connection_refusal()
            || error.is_timeout()
        {
            Error::Connection(error)
        } else if error.code() == Some("NOGROUP") {
            Error::MissingGroup(error)
        } else if error.kind() == ErrorKind::TypeError {
            Error::BadReply(error.to_string())
        } else {
            Error::Command {
                kind: error.kind(),
                error,
            }
        }
    }

    /// Whether Redis is away (rather than answering with an error): such a failure marks the
    /// handle unhealthy until the supervisor reconnects.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            Error::Unavailable | Error::NotConnected | Error::Timeout | Error::Connection(_)
        )
    }

    /// The code of an error reply (`BUSYGROUP`, `NOGROUP`, `WRONGTYPE`, `ERR`, ...).
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Command { error, .. } | Error::MissingGroup(error) => error.code(),
            _ => None,
        }
    }
}

/// The click path's view of a stream failure: a missing group is recreated by the consumer,
/// anything else is retried. Defined here, not in `clicks`: the adapter depends on the port,
/// never the other way round.
impl From<Error> for LogError {
    fn from(error: Error) -> Self {
        match error {
            Error::MissingGroup(_) => LogError::MissingGroup(error.to_string()),
            other => LogError::Failed(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The error Redis would send as `reply` (a RESP error line).
    fn reply_error(reply: &str) -> RedisError {
        ::redis::parse_redis_value(format!("-{reply}\r\n").as_bytes())
            .expect("a RESP error line")
            .extract_error()
            .expect_err("an error reply")
    }

    #[test]
    fn nogroup_replies_are_missing_groups_for_the_click_path_with_their_text() {
        let error = Error::from_redis(reply_error(
            "NOGROUP No such key 'clicks' or consumer group 'worker' in XREADGROUP",
        ));
        assert!(matches!(error, Error::MissingGroup(_)), "{error:?}");
        assert!(!error.is_unreachable());
        assert_eq!(error.code(), Some("NOGROUP"));
        let text = error.to_string();
        assert!(text.contains("NOGROUP"), "{text}");
        assert!(text.contains("consumer group 'worker'"), "{text}");
        assert_eq!(LogError::from(error), LogError::MissingGroup(text.clone()));
        assert_eq!(
            LogError::MissingGroup(text.clone()).to_string(),
            format!("the click stream or its consumer group is missing: {text}")
        );
    }

    #[test]
    fn error_replies_keep_their_code_and_leave_redis_reachable() {
        let error = Error::from_redis(reply_error("BUSYGROUP Consumer Group name already exists"));
        assert!(
            matches!(
                error,
                Error::Command {
                    kind: ErrorKind::ExtensionError,
                    ..
                }
            ),
            "{error:?}"
        );
        assert_eq!(error.code(), Some("BUSYGROUP"));
        assert!(!error.is_unreachable());
        let wrong_type = Error::from_redis(reply_error(
            "WRONGTYPE Operation against a key holding the wrong kind of value",
        ));
        assert_eq!(wrong_type.code(), Some("WRONGTYPE"));
        assert!(matches!(
            LogError::from(wrong_type),
            LogError::Failed(m) if m.contains("WRONGTYPE")
        ));
    }

    #[test]
    fn broken_connections_mean_redis_is_unreachable() {
        for kind in [
            std::io::ErrorKind::ConnectionRefused,
            std::io::ErrorKind::ConnectionReset,
            std::io::ErrorKind::BrokenPipe,
            std::io::ErrorKind::TimedOut,
        ] {
            let error = Error::from_redis(std::io::Error::new(kind, "gone").into());
            assert!(matches!(error, Error::Connection(_)), "{kind:?}: {error:?}");
            assert!(error.is_unreachable(), "{kind:?}");
            assert_eq!(error.to_string(), "gone");
        }
        for error in [Error::Unavailable, Error::NotConnected, Error::Timeout] {
            assert!(error.is_unreachable(), "{error:?}");
        }
    }

    #[test]
    fn messages_read_alone_and_reach_the_click_path_unchanged() {
        assert_eq!(
            LogError::from(Error::Timeout),
            LogError::Failed("redis timed out".into())
        );
        assert_eq!(
            LogError::from(Error::Unavailable),
            LogError::Failed("redis unavailable".into())
        );
        assert_eq!(
            LogError::from(Error::NotConnected),
            LogError::Failed("redis not connected".into())
        );
        assert_eq!(
            LogError::from(Error::BadReply("a stream entry without an id".into())),
            LogError::Failed("a stream entry without an id".into())
        );
    }
}
