//! A call's queue of datagrams from the shared browser port: the port's task pushes, the call's
//! task takes.
//!
//! One lock around a small ring and the waiting task's waker, instead of a bounded channel:
//! the channel's blocks of 32 slots (two of them once the queue has moved along, 5 KiB per
//! call) hold a few datagrams at a time for audio, and its semaphore and waker cost more per
//! packet than an uncontended lock. The port wakes the call's task only when the queue goes
//! from empty to holding something while the task waits: a burst read in one go wakes it once.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use super::Datagram;

/// Datagrams from the browser waiting for the call's task; past it they are dropped.
const LIMIT: usize = 512;

#[derive(Debug, Default)]
struct State {
    datagrams: VecDeque<Datagram>,
    /// The call's task, waiting for a datagram.
    waiting: Option<Waker>,
    /// The call's side is gone: nothing more is taken.
    closed: bool,
}

/// Both ends of one call's queue (the port holds a clone).
#[derive(Debug, Clone, Default)]
pub(crate) struct BrowserQueue(Arc<Mutex<State>>);

impl BrowserQueue {
    fn state(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; a poisoned one is as good as any.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a datagram; `false` when the queue is full or its call is gone (it is dropped).
    pub(crate) fn push(&self, datagram: Datagram) -> bool {
        let waiting = {
            let mut state = self.state();
            if state.closed || state.datagrams.len() >= LIMIT {
                return false;
            }
            state.datagrams.push_back(datagram);
            state.waiting.take()
        };
        if let Some(waker) = waiting {
            waker.wake();
        }
        true
    }

    /// The next datagram, or the task is woken when one comes.
    pub(crate) fn poll_pop(&self, cx: &mut Context<'_>) -> Poll<Datagram> {
        let mut state = self.state();
        if let Some(datagram) = state.datagrams.pop_front() {
            return Poll::Ready(datagram);
        }
        if !state
            .waiting
            .as_ref()
            .is_some_and(|waker| waker.will_wake(cx.waker()))
        {
            state.waiting = Some(cx.waker().clone());
        }
        Poll::Pending
    }

    /// The next datagram if one is there.
    pub(crate) fn pop(&self) -> Option<Datagram> {
        self.state().datagrams.pop_front()
    }

    /// The call is gone: what is queued is dropped and nothing more is taken.
    pub(crate) fn close(&self) {
        let mut state = self.state();
        state.closed = true;
        state.datagrams.clear();
        state.waiting = None;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;
    use std::time::Instant;

    use super::*;

    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn datagram(byte: u8) -> Datagram {
        Datagram {
            source: "127.0.0.1:5000".parse().unwrap(),
            at: Instant::now(),
            data: bytes::Bytes::from(vec![byte]),
        }
    }

    /// In order; a waiting task is woken once for a burst, and not at all while it is not
    /// waiting.
    #[test]
    fn a_burst_wakes_the_waiting_task_once() {
        let queue = BrowserQueue::default();
        let count = Arc::new(Count::default());
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(queue.poll_pop(&mut cx).is_pending());
        for byte in 0..3 {
            assert!(queue.push(datagram(byte)));
        }
        assert_eq!(count.0.load(Ordering::Relaxed), 1);
        let mut taken = Vec::new();
        while let Poll::Ready(datagram) = queue.poll_pop(&mut cx) {
            taken.push(datagram.data[0]);
        }
        assert_eq!(taken, [0, 1, 2]);
        // Waiting again (the last poll registered): the next push wakes it.
        assert!(queue.push(datagram(3)));
        assert_eq!(count.0.load(Ordering::Relaxed), 2);
        assert_eq!(queue.pop().map(|datagram| datagram.data[0]), Some(3));
        assert!(queue.pop().is_none());
        // Not waiting: pushes wake nobody.
        assert!(queue.push(datagram(4)));
        assert_eq!(count.0.load(Ordering::Relaxed), 2);
    }

    /// Full at the limit; closed takes nothing and holds nothing.
    #[test]
    fn full_and_closed_queues_drop() {
        let queue = BrowserQueue::default();
        for _ in 0..LIMIT {
            assert!(queue.push(datagram(0)));
        }
        assert!(!queue.push(datagram(1)));
        assert!(queue.pop().is_some());
        assert!(queue.push(datagram(2)));
        queue.close();
        assert!(queue.pop().is_none());
        assert!(!queue.push(datagram(3)));
    }
}
