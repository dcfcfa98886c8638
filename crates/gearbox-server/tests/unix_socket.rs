//! The unix-socket listener (Config.unix_path).

mod support;

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use support::*;

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "gearbox-unix-test-{}-{n}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn socket(&self) -> PathBuf {
        self.0.join("gearbox.sock")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test]
async fn submit_over_unix_and_work_over_tcp() {
    let dir = TempDir::new();
    let path = dir.socket();
    let server = TestServer::with(|c| c.unix_path = Some(path.clone())).await;
    let mut client = server.unix_conn(&path).await;
    let h = client.submit(T::SUBMIT_JOB, "f", "", "over unix").await;
    let mut worker = server.conn().await;
    worker.can_do("f").await;
    let (wh, _, data) = worker.grab().await;
    assert_eq!((wh, data), (h.clone(), b"over unix".to_vec()));
    worker.send(T::WORK_COMPLETE, &[&h, b"done"]).await;
    client.expect_packet(T::WORK_COMPLETE, &[&h, b"done"]).await;
    assert_eq!(client.listing("status").await, "f\t0\t0\t1\n.\n");
}

#[tokio::test]
async fn unix_only_server_works() {
    let dir = TempDir::new();
    let path = dir.socket();
    let server = TestServer::with(|c| {
        c.listen = vec![];
        c.unix_path = Some(path.clone());
    })
    .await;
    assert!(server.addr.is_none());
    let mut conn = server.unix_conn(&path).await;
    conn.sync().await;
}

#[tokio::test]
async fn a_stale_socket_file_is_replaced_at_bind() {
    let dir = TempDir::new();
    let path = dir.socket();
    // A socket file nobody listens on any more.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(std::fs::symlink_metadata(&path)
        .unwrap()
        .file_type()
        .is_socket());
    let server = TestServer::with(|c| c.unix_path = Some(path.clone())).await;
    let mut conn = server.unix_conn(&path).await;
    conn.sync().await;
}

#[tokio::test]
async fn a_live_socket_is_not_taken_over() {
    let dir = TempDir::new();
    let path = dir.socket();
    let _first = TestServer::with(|c| c.unix_path = Some(path.clone())).await;
    let mut config = config();
    config.unix_path = Some(path.clone());
    assert!(gearbox_server::Server::bind(config).await.is_err());
}

fn mode_of(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[tokio::test]
async fn socket_mode_is_the_default_unix_mode() {
    let dir = TempDir::new();
    let path = dir.socket();
    let server = TestServer::with(|c| c.unix_path = Some(path.clone())).await;
    assert_eq!(server.config.unix_mode, 0o660);
    assert_eq!(mode_of(&path), 0o660);
}

#[tokio::test]
async fn socket_mode_follows_config_unix_mode() {
    let dir = TempDir::new();
    let path = dir.socket();
    let _server = TestServer::with(|c| {
        c.unix_path = Some(path.clone());
        c.unix_mode = 0o600;
    })
    .await;
    assert_eq!(mode_of(&path), 0o600);
}

#[tokio::test]
async fn workers_shows_unix_as_the_host() {
    let dir = TempDir::new();
    let path = dir.socket();
    let server = TestServer::with(|c| c.unix_path = Some(path.clone())).await;
    let mut worker = server.unix_conn(&path).await;
    worker.send(T::SET_CLIENT_ID, &[b"uw"]).await;
    worker.can_do("f").await;
    let mut admin = server.conn().await;
    let workers = admin.listing("workers").await;
    assert!(
        workers.lines().any(|l| l.ends_with(" unix uw : f")),
        "{workers:?}"
    );
}

#[tokio::test]
async fn shutdown_over_the_unix_socket_is_allowed() {
    let dir = TempDir::new();
    let path = dir.socket();
    let mut server = TestServer::with(|c| c.unix_path = Some(path.clone())).await;
    let mut admin = server.unix_conn(&path).await;
    assert_eq!(admin.admin("shutdown").await, "OK\r\n");
    assert!(server.stopped_within(WAIT).await);
    // The socket file goes away with the server.
    for _ in 0..50 {
        if !path.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!path.exists(), "socket file left behind");
}
