//! Dropping long chains of reference-counted values without recursion.
//!
//! A code instance holds what it was compiled against (its dependencies' code instances and
//! slots) and, once invalidated, the instance the invalidation reached it through; a declared type
//! holds its parent. All of these form chains: 10^5 callers in a row is a chain of 10^5
//! instances, a hierarchy 10^5 levels deep a chain of 10^5 types. When the last reference to the
//! head of such a chain goes, plain drop glue would drop the next link inside the first one's
//! destructor, and so on, one stack frame set per link, overflowing the stack. Instead,
//! destructors hand the links they own to [`defer`], which drops them one after another in a loop
//! at the outermost destructor.

use std::cell::RefCell;

thread_local! {
    /// Links waiting to be dropped, while a [`defer`] loop runs on this thread.
    static PENDING: RefCell<Option<Vec<Box<dyn Send>>>> = const { RefCell::new(None) };
}

/// Drops `value` now if no [`defer`] loop is running on this thread (running one, which also
/// drops whatever `value`'s destructor defers), and otherwise queues it for the running loop.
pub(crate) fn defer<T: Send + 'static>(value: T) {
    let mut value = Some(value);
    let outermost = PENDING
        .try_with(|pending| {
            let mut pending = pending.borrow_mut();
            match pending.as_mut() {
                Some(queue) => {
                    queue.push(Box::new(value.take()));
                    false
                }
                None => {
                    *pending = Some(Vec::new());
                    true
                }
            }
        })
        // During thread teardown the queue is gone: drop in place, as plain drop glue would.
        .unwrap_or(false);
    if !outermost {
        drop(value);
        return;
    }
    // Ends the loop even if a destructor panics: the queue is closed and what is left in it is
    // leaked (dropping it while unwinding could panic again and abort), so later drops on this
    // thread are not queued forever.
    struct Close;
    impl Drop for Close {
        fn drop(&mut self) {
            if let Ok(Some(rest)) = PENDING.try_with(|p| p.borrow_mut().take()) {
                if std::thread::panicking() {
                    std::mem::forget(rest);
                }
                // Otherwise the loop emptied it; dropping it frees only its buffer.
            }
        }
    }
    let _close = Close;
    drop(value);
    while let Some(next) = PENDING.with(|p| p.borrow_mut().as_mut().and_then(Vec::pop)) {
        drop(next);
    }
}

#[cfg(test)]
mod tests {
    use super::defer;
    use std::sync::Arc;

    /// A linked list whose destructor defers its tail, as code instances do.
    struct Link(Option<Arc<Link>>);

    impl Drop for Link {
        fn drop(&mut self) {
            defer(self.0.take());
        }
    }

    #[test]
    fn a_million_links_drop_without_overflowing_the_stack() {
        let handle = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(|| {
                let mut head = Link(None);
                for _ in 0..1_000_000 {
                    head = Link(Some(Arc::new(head)));
                }
                drop(head);
            })
            .unwrap();
        handle.join().expect("no stack overflow");
    }

    #[test]
    fn a_panicking_destructor_does_not_leave_the_queue_open() {
        struct Boom;
        impl Drop for Boom {
            fn drop(&mut self) {
                panic!("boom");
            }
        }
        /// Defers a `Boom`, so the panic happens inside the loop, not in the first drop.
        struct Holder(Option<Boom>);
        impl Drop for Holder {
            fn drop(&mut self) {
                defer(self.0.take());
            }
        }
        let result = std::panic::catch_unwind(|| defer(Holder(Some(Boom))));
        assert!(result.is_err());
        // The next outermost defer runs its own loop: what it is given really is dropped.
        let shared = Arc::new(Link(None));
        defer(Link(Some(Arc::clone(&shared))));
        assert_eq!(Arc::strong_count(&shared), 1);
    }

    #[test]
    fn shared_links_are_dropped_once_their_last_owner_goes() {
        let shared = Arc::new(Link(None));
        let a = Link(Some(Arc::clone(&shared)));
        drop(a);
        assert_eq!(Arc::strong_count(&shared), 1);
    }
}
