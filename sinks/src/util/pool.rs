//! Serialisation buffers used again once the last line of their batch is delivered.
//!
//! A batch's JSON is a few hundred KiB. Allocated afresh per batch and freed on another
//! thread (the writer), it came from fresh pages nearly every time: the kernel zeroing
//! them was ~5 % of perisco's CPU at 20 k exchanges/s. Kept here, the same few buffers go
//! round.

use std::sync::{Arc, Mutex};

use bytes::Bytes;

/// Idle buffers kept (a batch in the reader, one or two waiting for the writer).
const KEPT: usize = 4;
/// A buffer grown larger than this (a burst of large events) is freed, not kept.
const MAX_KEPT_CAPACITY: usize = 4 << 20;

#[derive(Clone, Default)]
pub struct BufferPool(Arc<Mutex<Vec<Vec<u8>>>>);

impl BufferPool {
    /// An empty buffer with room for at least `capacity` bytes.
    pub fn take(&self, capacity: usize) -> Vec<u8> {
        match self.lock().pop() {
            Some(mut buf) if buf.capacity() >= capacity => {
                buf.clear();
                buf
            }
            // Too small (or none): a new one, rather than a realloc that copies stale bytes.
            _ => Vec::with_capacity(capacity),
        }
    }

    /// Share `buf` as `Bytes`; it comes back to the pool when the last slice is dropped.
    pub fn share(&self, buf: Vec<u8>) -> Bytes {
        Bytes::from_owner(Pooled {
            buf,
            pool: self.clone(),
        })
    }

    /// Idle buffers held now.
    pub fn idle(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Vec<u8>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct Pooled {
    buf: Vec<u8>,
    pool: BufferPool,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if self.buf.capacity() > MAX_KEPT_CAPACITY {
            return;
        }
        let mut idle = self.pool.lock();
        if idle.len() < KEPT {
            idle.push(std::mem::take(&mut self.buf));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_returns_once_its_last_slice_is_dropped() {
        let pool = BufferPool::default();
        let mut buf = pool.take(1024);
        buf.extend_from_slice(b"{\"a\":1}{\"b\":2}");
        let ptr = buf.as_ptr();
        let whole = pool.share(buf);
        let (a, b) = (whole.slice(0..7), whole.slice(7..14));
        drop(whole);
        assert_eq!(&a[..], b"{\"a\":1}");
        drop(a);
        assert_eq!(pool.idle(), 0, "a slice is still alive");
        assert_eq!(&b[..], b"{\"b\":2}");
        drop(b);
        assert_eq!(pool.idle(), 1);
        let again = pool.take(16);
        assert_eq!(again.as_ptr(), ptr, "the same allocation is used again");
        assert!(again.is_empty() && again.capacity() >= 1024);
    }

    #[test]
    fn the_pool_keeps_few_and_modest_buffers() {
        let pool = BufferPool::default();
        let shared: Vec<Bytes> = (0..KEPT + 2).map(|_| pool.share(pool.take(64))).collect();
        drop(shared);
        assert_eq!(pool.idle(), KEPT);
        let pool = BufferPool::default();
        drop(pool.share(pool.take(MAX_KEPT_CAPACITY + 1)));
        assert_eq!(pool.idle(), 0, "an oversized buffer is freed");
    }
}
