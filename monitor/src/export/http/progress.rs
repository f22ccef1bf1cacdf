//! A connection's last progress: when it last read or wrote a byte, for the idle timeout.

use std::{
    io,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::Instant,
};

/// When the connection last read and last wrote a byte, shared between its stream and its
/// timers.
#[derive(Clone, Debug)]
pub(crate) struct Progress {
    start: Instant,
    /// Microseconds after `start`, plus one; 0: never.
    last_read: Arc<AtomicU64>,
    last_write: Arc<AtomicU64>,
}

impl Progress {
    /// Progress as of now.
    pub(crate) fn new() -> Self {
        Self {
            start: Instant::now(),
            last_read: Arc::default(),
            last_write: Arc::default(),
        }
    }

    fn touch(&self, which: &AtomicU64) {
        let us = u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX - 1);
        which.store(us + 1, Ordering::Relaxed);
    }

    /// When a byte was last read or written (the start if never).
    pub(crate) fn last(&self) -> Instant {
        let latest = self
            .last_read
            .load(Ordering::Relaxed)
            .max(self.last_write.load(Ordering::Relaxed));
        self.start + std::time::Duration::from_micros(latest.saturating_sub(1))
    }

    /// Whether bytes arrived since the last write: a request (head) begun and not answered, as
    /// opposed to a connection idle since its last answer or since it opened.
    pub(crate) fn read_since_write(&self) -> bool {
        self.last_read.load(Ordering::Relaxed) > self.last_write.load(Ordering::Relaxed)
    }
}

/// A stream that records its [`Progress`] on every read or write that moves bytes.
#[derive(Debug)]
pub(crate) struct Tracked<S> {
    stream: S,
    progress: Progress,
}

impl<S> Tracked<S> {
    pub(crate) fn new(stream: S, progress: Progress) -> Self {
        Self { stream, progress }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.progress.touch(&self.progress.last_read);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.progress.touch(&self.progress.last_write);
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.progress.touch(&self.progress.last_write);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn reads_and_writes_move_the_last_progress() {
        let (ours, mut theirs) = tokio::io::duplex(64);
        let progress = Progress::new();
        let start = progress.last();
        let mut tracked = Tracked::new(ours, progress.clone());
        tokio::time::advance(std::time::Duration::from_secs(2)).await;
        assert_eq!(progress.last(), start, "nothing moved yet");
        assert!(!progress.read_since_write());
        theirs.write_all(b"GET").await.unwrap();
        let mut head = [0; 3];
        tracked.read_exact(&mut head).await.unwrap();
        assert!(progress.read_since_write(), "a request begun");
        assert!(progress.last() >= start + std::time::Duration::from_secs(2));
        tokio::time::advance(std::time::Duration::from_secs(3)).await;
        tracked.write_all(b"x").await.unwrap();
        assert!(!progress.read_since_write(), "answered");
        assert!(progress.last() >= start + std::time::Duration::from_secs(5));
    }
}
