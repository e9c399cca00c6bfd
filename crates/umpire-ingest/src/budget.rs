//! How an ingest pod divides its memory limit: a share for OTLP requests being read and
//! decoded, a share for spans awaiting their sampling decision, and the rest for the
//! runtime, NATS client buffers and publications in flight.

/// Assumed when nothing limits the process (a laptop, `umpire local`).
pub const ASSUMED_LIMIT: u64 = 1 << 30;
/// Share of the limit charged to requests in flight (body bytes × decoding expansion).
pub const REQUEST_SHARE_PERCENT: u64 = 20;
/// Share of the limit for buffered spans (their decoded size).
pub const BUFFER_SHARE_PERCENT: u64 = 25;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryBudget {
    /// The limit found (`None`: none, and `ASSUMED_LIMIT` was used).
    pub limit: Option<u64>,
    pub requests: usize,
    pub buffer: usize,
}

impl MemoryBudget {
    pub fn from_limit(limit: Option<u64>) -> Self {
        let base = limit.unwrap_or(ASSUMED_LIMIT);
        let share = |percent: u64| usize::try_from(base / 100 * percent).unwrap_or(usize::MAX);
        Self {
            limit,
            requests: share(REQUEST_SHARE_PERCENT),
            buffer: share(BUFFER_SHARE_PERCENT),
        }
    }

    /// Intake messages pulled but not yet buffered: an eighth of the buffer's share, and at
    /// least one largest message.
    pub fn deliveries(&self, largest_message: usize) -> usize {
        (self.buffer / 8).max(largest_message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_follow_the_limit() {
        let budget = MemoryBudget::from_limit(Some(512 << 20));
        assert_eq!(budget.requests, (512 << 20) / 100 * 20);
        assert_eq!(budget.buffer, (512 << 20) / 100 * 25);
        assert_eq!(
            MemoryBudget::from_limit(None).requests,
            MemoryBudget::from_limit(Some(ASSUMED_LIMIT)).requests
        );
    }
}
