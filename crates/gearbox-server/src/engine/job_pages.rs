//! Live jobs by handle number, in pages of consecutive ids.
//!
//! Job ids are handed out in order and never reused, so the jobs created
//! together sit together: a page holds [`PAGE`] consecutive ids, and the
//! pages are found through a small hash table keyed by page number.
//!
//! Why not one hash table of (id, job), as before: at a million queued jobs
//! that table had 2M slots of 16 bytes. Each submit wrote a random slot of it
//! (a cache miss), and each doubling moved every entry at once, holding the
//! engine lock for tens of milliseconds; the fill benchmark's slice that
//! crossed 917,504 jobs ran 20–30% slower than the others. With pages, a
//! submit writes the next slot of the newest page, a lookup is one probe of a
//! table a 256th the size plus one load, and nothing ever moves more than the
//! page table. A queued job costs 8 bytes here instead of 16–36.
//!
//! A page is freed when its last job goes, so memory follows live jobs: the
//! worst case, one live job per page (long-lived jobs among a stream of short
//! ones), is one page (about 2 KiB) per live job. Pages live in the job arena
//! (`arena.rs`), so that they are destroyed with it after a large backlog has
//! drained: from jemalloc's default arena they left 0.2–0.4 MiB of RSS behind
//! after a 1M drain (7.7 against 7.3–7.5 MiB).

use super::arena::{ArenaBox, Tailed};
use super::jobs::{Job, JobId};
use hashbrown::HashTable;

/// Ids per page: 2 KiB of slots, exactly one jemalloc size class.
const PAGE: u64 = 256;

/// One page's entry in the page table. The count lives here, not in the
/// boxed slots, so that the box is exactly 2 KiB.
struct Page {
    number: u64,
    live: u32,
    slots: ArenaBox<Slots>,
}

struct Slots([Option<Job>; PAGE as usize]);

impl Tailed for Slots {
    fn tail_len(&self) -> usize {
        0
    }
}

#[derive(Default)]
pub struct JobPages {
    pages: HashTable<Page>,
    len: usize,
}

/// Page numbers are ours and dense, so a multiply-fold spreads them enough.
fn page_hash(page: u64) -> u64 {
    super::fold(page)
}

impl JobPages {
    pub fn len(&self) -> usize {
        self.len
    }

    fn page(&self, number: u64) -> Option<&Page> {
        self.pages.find(page_hash(number), |p| p.number == number)
    }

    fn page_mut(&mut self, number: u64) -> Option<&mut Page> {
        self.pages
            .find_mut(page_hash(number), |p| p.number == number)
    }

    pub fn get(&self, id: JobId) -> Option<&Job> {
        self.page(id / PAGE)?.slots.0[(id % PAGE) as usize].as_ref()
    }

    pub fn get_mut(&mut self, id: JobId) -> Option<&mut Job> {
        self.page_mut(id / PAGE)?.slots.0[(id % PAGE) as usize].as_mut()
    }

    /// Stores `job` under `id`, which must not be live.
    pub fn insert(&mut self, id: JobId, job: Job) {
        let number = id / PAGE;
        let page = self
            .pages
            .entry(
                page_hash(number),
                |p| p.number == number,
                |p| page_hash(p.number),
            )
            .or_insert_with(|| Page {
                number,
                live: 0,
                slots: ArenaBox::with_tail(Slots([const { None }; PAGE as usize]), &[]),
            })
            .into_mut();
        let slot = &mut page.slots.0[(id % PAGE) as usize];
        debug_assert!(slot.is_none(), "job id {id} reused");
        if slot.replace(job).is_none() {
            page.live += 1;
            self.len += 1;
        }
    }

    pub fn remove(&mut self, id: JobId) -> Option<Job> {
        let number = id / PAGE;
        let Ok(mut entry) = self
            .pages
            .find_entry(page_hash(number), |p| p.number == number)
        else {
            return None;
        };
        let page = entry.get_mut();
        let job = page.slots.0[(id % PAGE) as usize].take()?;
        page.live -= 1;
        self.len -= 1;
        if page.live == 0 {
            entry.remove();
            if self.pages.capacity() > 64 && self.pages.len() * 4 < self.pages.capacity() {
                self.pages
                    .shrink_to(self.pages.len() * 2, |p| page_hash(p.number));
            }
        }
        Some(job)
    }

    /// Every live job, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Job> {
        self.pages
            .iter()
            .flat_map(|page| page.slots.0.iter().flatten())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::jobs::{JobState, NORMAL};

    fn job() -> Job {
        Job::new(1, NORMAL, JobState::Queued, true, b"", b"", b"data")
    }

    #[test]
    fn jobs_are_found_by_id_across_pages_until_removed() {
        let mut pages = JobPages::default();
        for id in 1..=1000 {
            pages.insert(id, job());
        }
        assert_eq!(pages.len(), 1000);
        assert_eq!(pages.pages.len(), 4, "ids 1..=1000 span pages 0 to 3");
        assert!(pages.get(0).is_none());
        assert!(pages.get(1001).is_none());
        assert!(pages.get(u64::MAX).is_none());
        for id in (1..=1000).step_by(7) {
            assert!(pages.get(id).is_some(), "{id}");
            assert!(pages.remove(id).is_some(), "{id}");
            assert!(pages.get(id).is_none(), "{id}");
            assert!(pages.remove(id).is_none(), "{id} twice");
        }
        assert_eq!(pages.len(), 1000 - 143);
        assert_eq!(pages.iter().count(), pages.len());
    }

    #[test]
    fn a_page_is_freed_with_its_last_job_and_made_again_when_needed() {
        let mut pages = JobPages::default();
        // One long-lived job among a stream of short ones.
        pages.insert(5, job());
        for id in 6..100_000 {
            pages.insert(id, job());
            pages.remove(id);
        }
        assert_eq!(pages.len(), 1);
        assert_eq!(pages.pages.len(), 1, "only the long-lived job's page stays");
        assert!(pages.pages.capacity() <= 64, "the page table shrank");
        pages.remove(5);
        assert_eq!(pages.pages.len(), 0);
        pages.insert(100_000, job());
        assert!(pages.get(100_000).is_some());
        assert_eq!(pages.iter().count(), 1);
    }
}
