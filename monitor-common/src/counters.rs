//! Indexes into the per-CPU `COUNTERS` array. Monotonic counts only: the agent exports them as
//! Prometheus counters.

/// Segments retransmitted (`tcp_retransmit_skb`), on every socket, tracked or not.
pub const RETRANSMITS: u32 = 0;
/// Resets sent (`tcp_send_reset`), including those for segments that matched no socket.
pub const RESETS_SENT: u32 = 1;
/// Resets received (`tcp_receive_reset`).
pub const RESETS_RECEIVED: u32 = 2;
/// A socket could not be added to the table (full, or out of memory).
pub const TABLE_INSERT_FAILURES: u32 = 3;
/// Number of slots in the array.
pub const COUNT: u32 = 4;
