//! Job records live in a jemalloc arena of their own, one allocation per job
//! (the record followed by its bytes), and the arena is destroyed, bookkeeping
//! and all, once a large backlog has drained.
//!
//! Why: when a million queued jobs drain, jemalloc hands their pages back to
//! the OS but keeps the records it made about them: one extent record per slab
//! (128 bytes each) in metadata memory it never unmaps, plus its thread
//! caches' share of the freed sizes. Measured with jemalloc's statistics after
//! a 1M-job fill and drain: metadata 2.9 MB at start, 4.0 MB after, RSS 5.9 MiB
//! before and 7.7 after. `arena.<i>.destroy` frees an arena's metadata too.
//!
//! jemalloc's automatic thread caches mix objects of every arena, so a freed
//! job could sit in one after its arena is gone. Job allocations therefore go
//! through thread caches of their own (`tcache.create`, one per thread, used
//! only for the job arena), and a recycle flushes them all before it destroys
//! the arena. That is safe without the owners' help: while a recycle runs no
//! thread is inside a job allocation or free (see below), and those are the
//! only users of these caches. A job is also one allocation now, where record
//! and bytes used to be two.
//!
//! Safety of the destroy: an allocation counts itself in `LIVE` before it
//! checks, a second time, which arena is current; a recycle marks the arena as
//! being recycled before it checks that `LIVE` is zero. With both sequentially
//! consistent, either the allocation sees the mark (and retries), or the
//! recycle sees the count (and gives up). If jemalloc cannot make an arena,
//! allocations use its default ones.

use std::alloc::{handle_alloc_error, Layout};
use std::ffi::{c_void, CString};
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering::*};
use std::sync::Mutex;
use tikv_jemalloc_sys as jemalloc;

/// A backlog must have reached this many jobs at once for its drain to
/// recycle the arena: small loads never pay for destroying and making one.
const RECYCLE_AFTER: usize = 100_000;

/// No arena made yet.
const UNSET: u32 = u32::MAX;
/// jemalloc could not make an arena: use its default arenas and thread
/// caches, and never recycle.
const DEFAULT: u32 = u32::MAX - 1;
/// Being destroyed: allocations wait (for a few milliseconds, once per
/// drained backlog).
const RECYCLING: u32 = u32::MAX - 2;

static ARENA: AtomicU32 = AtomicU32::new(UNSET);
static LIVE: AtomicUsize = AtomicUsize::new(0);
static LARGE: AtomicBool = AtomicBool::new(false);
/// Serialises making and destroying arenas.
static RECYCLE: Mutex<u64> = Mutex::new(0);
/// Every thread's job cache, for a recycle to flush.
static CACHES: Mutex<Vec<u32>> = Mutex::new(Vec::new());

thread_local! {
    /// This thread's job cache; `None` if jemalloc would not make one.
    static CACHE: JobCache = JobCache(create_cache());
}

/// Destroys its cache when its thread exits: jemalloc has a few thousand
/// cache slots, and a program that keeps starting threads would use them up.
struct JobCache(Option<u32>);

impl Drop for JobCache {
    fn drop(&mut self) {
        let Some(index) = self.0 else { return };
        // Under the list's lock, so that no recycle flushes it meanwhile.
        let mut caches = CACHES.lock().unwrap_or_else(|p| p.into_inner());
        caches.retain(|&c| c != index);
        cache_op(c"tcache.destroy", index);
    }
}

fn create_cache() -> Option<u32> {
    let index = read_u32(c"tcache.create")?;
    CACHES.lock().unwrap_or_else(|p| p.into_inner()).push(index);
    Some(index)
}

/// A mallctl that makes something and returns its index.
fn read_u32(name: &std::ffi::CStr) -> Option<u32> {
    let mut index: u32 = 0;
    let mut len = std::mem::size_of::<u32>();
    let status = unsafe {
        jemalloc::mallctl(
            name.as_ptr(),
            (&mut index as *mut u32).cast(),
            &mut len,
            std::ptr::null_mut(),
            0,
        )
    };
    (status == 0).then_some(index)
}

/// The calling thread's job cache, unless it has none (or is exiting).
fn this_threads_cache() -> Option<u32> {
    CACHE.try_with(|cache| cache.0).ok().flatten()
}

fn current_arena() -> u32 {
    let arena = ARENA.load(SeqCst);
    if arena != UNSET {
        return arena;
    }
    let _made = RECYCLE.lock().unwrap_or_else(|p| p.into_inner());
    if ARENA.load(SeqCst) == UNSET {
        ARENA.store(create_arena().unwrap_or(DEFAULT), SeqCst);
    }
    ARENA.load(SeqCst)
}

fn alloc(layout: Layout) -> NonNull<u8> {
    let arena = loop {
        let arena = current_arena();
        if arena == RECYCLING {
            std::thread::yield_now();
            continue;
        }
        let live = LIVE.fetch_add(1, SeqCst) + 1;
        if ARENA.load(SeqCst) == arena {
            if live >= RECYCLE_AFTER && !LARGE.load(Relaxed) {
                LARGE.store(true, Relaxed);
            }
            break arena;
        }
        // A recycle began meanwhile: wait for it, then count again.
        LIVE.fetch_sub(1, SeqCst);
    };
    let arena_flag = match arena {
        DEFAULT => 0,
        arena => jemalloc::MALLOCX_ARENA(arena as usize),
    };
    let ptr = unsafe { jemalloc::mallocx(layout.size(), arena_flag | flags(arena, layout)) };
    NonNull::new(ptr.cast()).unwrap_or_else(|| handle_alloc_error(layout))
}

/// # Safety
/// `ptr` came from [`alloc`] with `layout` and is not used again.
unsafe fn free(ptr: NonNull<u8>, layout: Layout) {
    // jemalloc finds the arena from the pointer; the object goes to this
    // thread's job cache. (The arena may read RECYCLING here: a recycle that
    // will give up, since this object still counts in LIVE.)
    let flags = flags(ARENA.load(SeqCst), layout);
    unsafe { jemalloc::sdallocx(ptr.as_ptr().cast::<c_void>(), layout.size(), flags) };
    if LIVE.fetch_sub(1, SeqCst) == 1 && LARGE.load(Relaxed) {
        recycle();
    }
}

fn recycle() {
    let mut recycled = RECYCLE.lock().unwrap_or_else(|p| p.into_inner());
    let arena = ARENA.load(SeqCst);
    if arena >= RECYCLING || !LARGE.load(Relaxed) {
        return;
    }
    ARENA.store(RECYCLING, SeqCst);
    if LIVE.load(SeqCst) != 0 {
        ARENA.store(arena, SeqCst);
        return;
    }
    LARGE.store(false, Relaxed);
    for &cache in CACHES.lock().unwrap_or_else(|p| p.into_inner()).iter() {
        cache_op(c"tcache.flush", cache);
    }
    if !destroy_arena(arena) {
        tracing::warn!(arena, "could not destroy the job arena; keeping it");
        ARENA.store(arena, SeqCst);
        return;
    }
    *recycled += 1;
    ARENA.store(create_arena().unwrap_or(DEFAULT), SeqCst);
    tracing::debug!(arena, "job arena destroyed after a backlog drained");
}

/// How many times a drained backlog's arena was destroyed.
#[cfg(test)]
fn recycled() -> u64 {
    *RECYCLE.lock().unwrap_or_else(|p| p.into_inner())
}

/// The cache and alignment flags for a job allocation or free while `arena`
/// is current.
fn flags(arena: u32, layout: Layout) -> i32 {
    let align = jemalloc::MALLOCX_ALIGN(layout.align());
    if arena == DEFAULT {
        return align;
    }
    let cache = match this_threads_cache() {
        Some(cache) => jemalloc::MALLOCX_TCACHE(cache as usize),
        None => jemalloc::MALLOCX_TCACHE_NONE,
    };
    cache | align
}

/// `tcache.flush` or `tcache.destroy` of one cache.
fn cache_op(name: &std::ffi::CStr, cache: u32) {
    let mut cache = cache;
    let status = unsafe {
        jemalloc::mallctl(
            name.as_ptr(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            (&mut cache as *mut u32).cast(),
            std::mem::size_of::<u32>(),
        )
    };
    debug_assert_eq!(status, 0, "{name:?}");
}

fn create_arena() -> Option<u32> {
    read_u32(c"arenas.create").filter(|&index| index < RECYCLING)
}

fn destroy_arena(arena: u32) -> bool {
    let name = CString::new(format!("arena.{arena}.destroy")).expect("no NUL");
    let null = std::ptr::null_mut();
    unsafe { jemalloc::mallctl(name.as_ptr(), null, null.cast(), null, 0) == 0 }
}

/// A value with bytes of its own stored right after it.
pub trait Tailed {
    /// How many bytes follow the value.
    fn tail_len(&self) -> usize;
}

/// Like `Box<T>`, in the job arena, with `T`'s tail of bytes in the same
/// allocation.
pub struct ArenaBox<T: Tailed> {
    ptr: NonNull<T>,
}

// SAFETY: it owns its T and bytes as a Box would.
unsafe impl<T: Tailed + Send> Send for ArenaBox<T> {}
unsafe impl<T: Tailed + Sync> Sync for ArenaBox<T> {}

impl<T: Tailed> ArenaBox<T> {
    /// `value` followed by `parts`, which must add up to `value.tail_len()`.
    pub fn with_tail(value: T, parts: &[&[u8]]) -> ArenaBox<T> {
        let tail_len = value.tail_len();
        assert_eq!(parts.iter().map(|p| p.len()).sum::<usize>(), tail_len);
        let ptr = alloc(Self::layout(tail_len)).cast::<T>();
        unsafe {
            ptr.as_ptr().write(value);
            let mut at = ptr.as_ptr().add(1).cast::<u8>();
            for part in parts {
                at.copy_from_nonoverlapping(part.as_ptr(), part.len());
                at = at.add(part.len());
            }
        }
        ArenaBox { ptr }
    }

    pub fn tail(&self) -> &[u8] {
        unsafe {
            std::slice::from_raw_parts(self.ptr.as_ptr().add(1).cast::<u8>(), self.tail_len())
        }
    }

    /// The bytes start right after `T` (whose size is a multiple of its
    /// alignment, and bytes need none).
    fn layout(tail_len: usize) -> Layout {
        let size = std::mem::size_of::<T>() + tail_len;
        Layout::from_size_align(size.max(1), std::mem::align_of::<T>()).expect("job fits in memory")
    }
}

impl<T: Tailed> Deref for ArenaBox<T> {
    type Target = T;
    fn deref(&self) -> &T {
        unsafe { self.ptr.as_ref() }
    }
}

/// `T` must not change its `tail_len` through this.
impl<T: Tailed> DerefMut for ArenaBox<T> {
    fn deref_mut(&mut self) -> &mut T {
        unsafe { self.ptr.as_mut() }
    }
}

impl<T: Tailed> Drop for ArenaBox<T> {
    fn drop(&mut self) {
        let layout = Self::layout(self.tail_len());
        unsafe {
            self.ptr.as_ptr().drop_in_place();
            free(self.ptr.cast(), layout);
        }
    }
}

impl<T: Tailed + std::fmt::Debug> std::fmt::Debug for ArenaBox<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Named {
        name: String,
        len: usize,
    }

    impl Tailed for Named {
        fn tail_len(&self) -> usize {
            self.len
        }
    }

    fn named(name: &str, parts: &[&[u8]]) -> ArenaBox<Named> {
        let len = parts.iter().map(|p| p.len()).sum();
        ArenaBox::with_tail(
            Named {
                name: name.into(),
                len,
            },
            parts,
        )
    }

    #[test]
    fn a_box_holds_its_value_and_tail() {
        let mut boxed = named("x", &[b"uni", b"", b"data"]);
        boxed.name.push('y');
        assert_eq!(boxed.name, "xy");
        assert_eq!(boxed.tail(), b"unidata");
        assert_eq!(named("", &[]).tail(), b"");
    }

    /// Recycles while other threads allocate and free jobs of their own: no
    /// job may lose its bytes (a destroy under a live job, or a cached object
    /// of a destroyed arena handed out again, would show as wrong tails or a
    /// crash). The churners hold at most a few jobs each, so the count often
    /// falls to zero and each drained backlog recycles while they run.
    #[test]
    fn recycling_while_other_threads_churn_keeps_every_job_intact() {
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let churners: Vec<_> = (0..3u8)
            .map(|t| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut n = 0u64;
                    while !stop.load(SeqCst) {
                        let held: Vec<_> = (0..1 + n % 4)
                            .map(|k| named("churn", &[&(n + k).to_le_bytes(), &[t; 40]]))
                            .collect();
                        for (k, job) in held.iter().enumerate() {
                            assert_eq!(job.tail()[..8], (n + k as u64).to_le_bytes());
                            assert_eq!(job.tail()[8..], [t; 40]);
                        }
                        n += 1;
                    }
                })
            })
            .collect();
        for round in 0..3u64 {
            let before = recycled();
            let backlog: Vec<_> = (0..RECYCLE_AFTER as u64 + 1)
                .map(|i| named("b", &[&(i ^ round).to_le_bytes(), &[9; 60]]))
                .collect();
            for (i, job) in backlog.iter().enumerate() {
                assert_eq!(job.tail()[..8], (i as u64 ^ round).to_le_bytes());
                assert_eq!(job.tail()[8..], [9; 60]);
            }
            drop(backlog);
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while recycled() == before {
                assert!(
                    std::time::Instant::now() < deadline,
                    "round {round}: never recycled"
                );
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
        stop.store(true, SeqCst);
        for churner in churners {
            churner.join().expect("churner");
        }
    }

    #[test]
    fn a_thread_gives_its_cache_back_when_it_exits() {
        let caches = || CACHES.lock().unwrap().len();
        for _ in 0..20 {
            std::thread::spawn(|| drop(named("short-lived", &[b"x"])))
                .join()
                .unwrap();
        }
        // Other tests' threads come and go too; twenty of ours never pile up.
        assert!(caches() < 20, "{} caches", caches());
    }

    /// With the churn test above, the tests that make backlogs large enough
    /// to recycle the arena; the others stay far below it.
    #[test]
    fn the_arena_is_remade_once_a_large_backlog_has_fully_drained() {
        let before = recycled();
        let mut backlog: Vec<_> = (0..RECYCLE_AFTER + 10)
            .map(|i| named("job", &[&i.to_le_bytes(), &[7; 100]]))
            .collect();
        let last = backlog.pop().unwrap();
        drop(backlog);
        // Other tests' jobs may be alive too; this one certainly is.
        assert_eq!(recycled(), before);
        assert_eq!(last.tail()[8..], [7; 100]);
        drop(last);
        // Recycled now, or as soon as the jobs other tests hold are gone.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while recycled() == before {
            assert!(std::time::Instant::now() < deadline, "never recycled");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        // A new arena serves the next job.
        assert_eq!(named("after", &[b"ok"]).tail(), b"ok");
    }
}
