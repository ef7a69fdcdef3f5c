//! A replica cut off from its database by the network: nothing answers, nothing is refused.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rinha::config::Settings;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::{TestApp, db_client, fresh_database, pessoa, settings, stored_people};

/// A TCP relay to the database that can be cut: while cut, it holds every byte of the open
/// connections, as a network that drops packets does (TCP retransmits until the link heals),
/// and refuses new ones.
pub struct Link {
    address: String,
    cut: Arc<AtomicBool>,
    upstream: String,
    accepting: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Link {
    pub async fn to(database_url: &str) -> Link {
        let authority = database_url
            .split('@')
            .nth(1)
            .unwrap()
            .split('/')
            .next()
            .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let link = Link {
            address: listener.local_addr().unwrap().to_string(),
            cut: Arc::default(),
            upstream: authority.to_owned(),
            accepting: Default::default(),
        };
        link.accept_on(listener);
        link
    }

    fn accept_on(&self, listener: TcpListener) {
        let (cut, upstream) = (self.cut.clone(), self.upstream.clone());
        let accepting = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (cut, upstream) = (cut.clone(), upstream.clone());
                tokio::spawn(async move {
                    let server = TcpStream::connect(upstream).await.unwrap();
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    tokio::spawn(relay(client_read, server_write, cut.clone()));
                    relay(server_read, client_write, cut).await;
                });
            }
        });
        *self.accepting.lock().unwrap() = Some(accepting);
    }

    /// `database_url` through this link.
    pub fn url(&self, database_url: &str) -> String {
        let (scheme_user, rest) = database_url.split_once('@').unwrap();
        let path = rest.split_once('/').unwrap().1;
        format!("{scheme_user}@{}/{path}", self.address)
    }

    pub async fn set_cut(&self, cut: bool) {
        self.cut.store(cut, Ordering::Release);
        let accepting = self.accepting.lock().unwrap().take();
        match (accepting, cut) {
            // The listener goes with its task.
            (Some(accepting), true) => {
                accepting.abort();
                let _ = accepting.await;
            }
            (None, false) => self.accept_on(TcpListener::bind(&self.address).await.unwrap()),
            (unchanged, _) => *self.accepting.lock().unwrap() = unchanged,
        }
    }
}

async fn wait_while(cut: &AtomicBool) {
    while cut.load(Ordering::Acquire) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn relay(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    cut: Arc<AtomicBool>,
) {
    let mut buffer = vec![0; 64 * 1024];
    loop {
        match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => {
                wait_while(&cut).await;
                if to.write_all(&buffer[..read]).await.is_err() {
                    return;
                }
            }
        }
    }
}

#[tokio::test]
async fn a_replica_cut_off_from_its_database_answers_503_at_once_and_recovers_by_itself() {
    let database = fresh_database().await;
    let link = Link::to(&database).await;
    let app = TestApp::spawn_with(Settings {
        // Long enough that a call waiting it out is told from one failed at once.
        db_timeout: Duration::from_secs(3),
        ..settings(&link.url(&database))
    })
    .await;
    let location = app.create(&pessoa("antes")).await;

    link.set_cut(true).await;
    // The probe (every 100 ms, given 300 ms in the tests' settings) finds the database gone.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let unknown = format!("/pessoas/{}", uuid::Uuid::now_v7());
    for path in [unknown.as_str(), "/contagem-pessoas", "/pessoas?t=ant"] {
        let started = Instant::now();
        assert_eq!(app.get(path).await.status(), 503, "{path} while cut off");
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "{path} answered at once, not after the database timeout: {:?}",
            started.elapsed()
        );
    }
    // A person the replica stored itself is in its memory.
    assert_eq!(app.get(&location).await.status(), 200);
    let started = Instant::now();
    let refused = app.post(&pessoa("durante")).await;
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "1");
    assert!(started.elapsed() < Duration::from_millis(500));

    link.set_cut(false).await;
    let healed = Instant::now();
    while app.get("/contagem-pessoas").await.status() != 200 {
        assert!(
            healed.elapsed() < Duration::from_secs(5),
            "the replica recovers by itself"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.create(&pessoa("depois")).await;
    // The 503 was truthful: that person was never stored.
    assert_eq!(stored_people(&db_client(&database).await).await, 2);
}

#[tokio::test]
async fn once_the_database_is_found_out_of_reach_writes_and_searches_queued_behind_stuck_ones_fail_at_once()
 {
    let database = fresh_database().await;
    let link = Link::to(&database).await;
    let app = TestApp::spawn_with(Settings {
        db_timeout: Duration::from_secs(3),
        writers: 2,
        ..settings(&link.url(&database))
    })
    .await;
    app.create(&pessoa("antes")).await;
    // Every writer and a catch-up wait on a lock another session holds.
    let mut locker = db_client(&database).await;
    let lock = locker.transaction().await.unwrap();
    lock.batch_execute("LOCK TABLE pessoas IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let mut stuck = tokio::task::JoinSet::new();
    for i in 0..8 {
        let (client, address) = (app.http.clone(), app.address.clone());
        stuck.spawn(async move {
            let body = pessoa(&format!("preso{i}"));
            client
                .post(format!("{address}/pessoas"))
                .json(&body)
                .send()
                .await
        });
    }
    let (client, address) = (app.http.clone(), app.address.clone());
    stuck.spawn(async move { client.get(format!("{address}/pessoas?t=pres")).send().await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    link.set_cut(true).await;
    // The probe finds the database gone.
    tokio::time::sleep(Duration::from_millis(800)).await;
    // A new write or search is refused at once, not queued behind the stuck ones.
    let started = Instant::now();
    assert_eq!(app.post(&pessoa("durante")).await.status(), 503);
    assert_eq!(app.get("/pessoas?t=dur").await.status(), 503);
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "answered at once, not after the stuck calls' timeout: {:?}",
        started.elapsed()
    );
    lock.rollback().await.unwrap();
    stuck.join_all().await;
    link.set_cut(false).await;
}
