//! The call path allocates nothing: closed calls, open rejections, the manual permit API.

use std::alloc::{GlobalAlloc, Layout, System};
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};

use resilient_runtime::{CircuitBreaker, CircuitBreakerConfig, Outcome};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn ready<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("future was not ready"),
    }
}

fn allocations_during(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    f();
    ALLOCATIONS.load(Ordering::SeqCst) - before
}

#[test]
fn closed_calls_and_open_rejections_do_not_allocate() {
    let cb = CircuitBreaker::named(
        "no-alloc",
        CircuitBreakerConfig {
            failure_threshold: 3,
            ..Default::default()
        },
    );
    // warm up thread-locals and lazy statics
    let _ = ready(cb.call(|| async { Ok::<u32, ()>(1) }));

    let n = allocations_during(|| {
        for i in 0..1000u32 {
            let r = ready(cb.call(|| async move { Ok::<u32, ()>(i) }));
            assert_eq!(r, Ok(i));
            cb.try_acquire().unwrap().record(Outcome::Success);
        }
    });
    assert_eq!(n, 0, "closed path allocated");

    for _ in 0..3 {
        let _ = ready(cb.call(|| async { Err::<u32, ()>(()) }));
    }
    let n = allocations_during(|| {
        for _ in 0..1000 {
            assert!(ready(cb.call(|| async { Ok::<u32, ()>(1) })).is_err());
            assert!(cb.try_acquire().is_err());
        }
    });
    assert_eq!(n, 0, "open rejection allocated");
}
