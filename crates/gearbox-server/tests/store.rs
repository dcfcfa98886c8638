//! What the engine tells its queue store (Server::bind_with_store), driven
//! over raw sockets: background jobs are added when accepted and removed when
//! they end, and nothing else is.

mod support;

use gearbox_server::store::{QueueStore, StoreError, StoredJob};
use std::sync::{Arc, Mutex};
use support::*;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    /// id, function, unique, data, priority, when
    Add(u64, String, String, String, u8, u64),
    Remove(u64, String, String),
}

#[derive(Clone, Default)]
struct Recorder {
    events: Arc<Mutex<Vec<Event>>>,
    refuse: bool,
}

impl Recorder {
    fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }
}

impl QueueStore for Recorder {
    fn add(&mut self, job: &StoredJob<'_>) -> Result<(), StoreError> {
        if self.refuse {
            return Err(StoreError("disk full".into()));
        }
        self.events.lock().unwrap().push(Event::Add(
            job.id,
            s(job.function),
            s(job.unique),
            s(job.data),
            job.priority,
            job.when,
        ));
        Ok(())
    }

    fn remove(&mut self, job: &StoredJob<'_>) {
        self.events
            .lock()
            .unwrap()
            .push(Event::Remove(job.id, s(job.function), s(job.unique)));
    }
}

async fn recording() -> (TestServer, Recorder) {
    let recorder = Recorder::default();
    let server = TestServer::with_store(config(), Box::new(recorder.clone())).await;
    (server, recorder)
}

fn add(id: u64, f: &str, u: &str, d: &str, prio: u8, when: u64) -> Event {
    Event::Add(id, f.into(), u.into(), d.into(), prio, when)
}

fn remove(id: u64, f: &str, u: &str) -> Event {
    Event::Remove(id, f.into(), u.into())
}

#[tokio::test]
async fn background_submits_are_added_with_their_priority() {
    let (server, store) = recording().await;
    let mut client = server.conn().await;
    client.submit(T::SUBMIT_JOB_HIGH_BG, "f", "a", "1").await;
    client.submit(T::SUBMIT_JOB_BG, "f", "b", "2").await;
    client.submit(T::SUBMIT_JOB_LOW_BG, "f", "c", "3").await;
    client.submit(T::SUBMIT_JOB, "f", "d", "4").await;
    client.submit(T::SUBMIT_JOB_BG, "f", "a", "dup").await;
    assert_eq!(
        store.events(),
        [
            add(1, "f", "a", "1", 0, 0),
            add(2, "f", "b", "2", 1, 0),
            add(3, "f", "c", "3", 2, 0),
        ]
    );
}

#[tokio::test]
async fn epoch_jobs_are_added_with_their_time() {
    let (server, store) = recording().await;
    let mut client = server.conn().await;
    let when = now_epoch() + 100;
    client.submit_epoch("f", "e", &when.to_string(), "d").await;
    assert_eq!(store.events(), [add(1, "f", "e", "d", 1, when)]);
}

#[tokio::test]
async fn completed_failed_and_excepted_background_jobs_are_removed() {
    let (server, store) = recording().await;
    let mut client = server.conn().await;
    let mut worker = server.conn().await;
    worker.can_do("f").await;
    for (kind, unique) in [
        (T::WORK_COMPLETE, "c"),
        (T::WORK_FAIL, "x"),
        (T::WORK_EXCEPTION, "e"),
    ] {
        let h = client.submit(T::SUBMIT_JOB_BG, "f", unique, "d").await;
        worker.grab().await;
        if kind == T::WORK_FAIL {
            worker.send(kind, &[&h]).await;
        } else {
            worker.send(kind, &[&h, b"r"]).await;
        }
        worker.sync().await;
    }
    assert_eq!(
        store.events(),
        [
            add(1, "f", "c", "d", 1, 0),
            remove(1, "f", "c"),
            add(2, "f", "x", "d", 1, 0),
            remove(2, "f", "x"),
            add(3, "f", "e", "d", 1, 0),
            remove(3, "f", "e"),
        ]
    );
}

#[tokio::test]
async fn a_lost_worker_removes_nothing() {
    let (server, store) = recording().await;
    let mut client = server.conn().await;
    client.submit(T::SUBMIT_JOB_BG, "f", "u", "d").await;
    let mut w1 = server.conn().await;
    w1.can_do("f").await;
    w1.grab().await;
    w1.close().await;
    let mut admin = server.conn().await;
    wait_status(&mut admin, "f", |r| r == Some((1, 0, 0))).await;
    assert_eq!(store.events(), [add(1, "f", "u", "d", 1, 0)]);
}

#[tokio::test]
async fn a_job_dropped_after_its_retries_is_removed() {
    let recorder = Recorder::default();
    let mut c = config();
    c.job_retries = 1;
    let server = TestServer::with_store(c, Box::new(recorder.clone())).await;
    let mut client = server.conn().await;
    client.submit(T::SUBMIT_JOB_BG, "f", "u", "d").await;
    let mut w1 = server.conn().await;
    w1.can_do("f").await;
    w1.grab().await;
    w1.close().await;
    let mut admin = server.conn().await;
    wait_status(&mut admin, "f", |r| r == Some((0, 0, 0))).await;
    assert_eq!(
        recorder.events(),
        [add(1, "f", "u", "d", 1, 0), remove(1, "f", "u")]
    );
}

#[tokio::test]
async fn cancelling_a_queued_background_job_removes_it_once() {
    let (server, store) = recording().await;
    let mut client = server.conn().await;
    let h = client.submit(T::SUBMIT_JOB_BG, "f", "u", "d").await;
    let mut admin = server.conn().await;
    assert_eq!(
        admin.admin(&format!("cancel job {}", s(&h))).await,
        "OK\r\n"
    );
    assert_eq!(
        store.events(),
        [add(1, "f", "u", "d", 1, 0), remove(1, "f", "u")]
    );
}

#[tokio::test]
async fn cancelling_a_running_background_job_removes_it_once() {
    let (server, store) = recording().await;
    let mut client = server.conn().await;
    let h = client.submit(T::SUBMIT_JOB_BG, "f", "u", "d").await;
    let mut worker = server.conn().await;
    worker.can_do("f").await;
    worker.grab().await;
    let mut admin = server.conn().await;
    assert_eq!(
        admin.admin(&format!("cancel job {}", s(&h))).await,
        "OK\r\n"
    );
    worker.send(T::WORK_COMPLETE, &[&h, b"r"]).await;
    worker.sync().await;
    assert_eq!(
        store.events(),
        [add(1, "f", "u", "d", 1, 0), remove(1, "f", "u")]
    );
}

/// gearbox persists a foreground job once a background submitter joins it
/// (gearmand writes nothing), and forgets it when it ends.
#[tokio::test]
async fn a_foreground_job_joined_in_the_background_is_added_then_removed() {
    let (server, store) = recording().await;
    let mut fg = server.conn().await;
    let h = fg.submit(T::SUBMIT_JOB, "f", "u", "d").await;
    let mut bg = server.conn().await;
    bg.submit(T::SUBMIT_JOB_BG, "f", "u", "other").await;
    bg.submit(T::SUBMIT_JOB_BG, "f", "u", "again").await;
    let mut worker = server.conn().await;
    worker.can_do("f").await;
    worker.grab().await;
    worker.send(T::WORK_COMPLETE, &[&h, b"r"]).await;
    fg.expect(T::WORK_COMPLETE).await;
    assert_eq!(
        store.events(),
        [add(1, "f", "u", "d", 1, 0), remove(1, "f", "u")]
    );
}

#[tokio::test]
async fn foreground_jobs_are_never_stored() {
    let (server, store) = recording().await;
    let mut client = server.conn().await;
    let h = client.submit(T::SUBMIT_JOB, "f", "u", "d").await;
    let mut worker = server.conn().await;
    worker.can_do("f").await;
    worker.grab().await;
    worker.send(T::WORK_COMPLETE, &[&h, b"r"]).await;
    client.expect(T::WORK_COMPLETE).await;
    assert_eq!(store.events(), []);
}

#[tokio::test]
async fn a_store_that_refuses_turns_the_submit_into_queue_error() {
    let recorder = Recorder {
        refuse: true,
        ..Recorder::default()
    };
    let server = TestServer::with_store(config(), Box::new(recorder.clone())).await;
    let mut client = server.conn().await;
    client.send(T::SUBMIT_JOB_BG, &[b"f", b"u", b"d"]).await;
    let p = client.expect(T::ERROR).await;
    assert_eq!(s(p.arg(0)), "QUEUE_ERROR");
    // No job exists, and a foreground submit still works.
    let mut admin = server.conn().await;
    assert_eq!(admin.listing("show jobs").await, ".\n");
    let h = client.submit(T::SUBMIT_JOB, "f", "u", "d").await;
    let mut worker = server.conn().await;
    worker.can_do("f").await;
    assert_eq!(worker.grab().await.0, h);
}
