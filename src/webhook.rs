//! The outgoing webhook: JSON bodies signed with HMAC-SHA256, retried with backoff.
