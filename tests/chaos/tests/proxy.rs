//! The proxy against a real echo server on 127.0.0.1: each fault does what it says, and no
//! fault changes the bytes that do get through.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use orpheus_chaos::{Faults, Proxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// An echo server; returns its address.
async fn echo() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = stream.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

/// Sends `data`, half-closes, and reads the echo to its end.
async fn round_trip(addr: SocketAddr, data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(addr).await?;
    let (mut r, mut w) = stream.split();
    let mut got = Vec::new();
    let (sent, read) = tokio::join!(
        async {
            w.write_all(data).await?;
            w.shutdown().await
        },
        r.read_to_end(&mut got)
    );
    sent?;
    read?;
    Ok(got)
}

#[tokio::test]
async fn transparent_without_faults() {
    let proxy = Proxy::start(echo().await, 1, Faults::none()).await.unwrap();
    let data = payload(300_000);
    assert_eq!(round_trip(proxy.addr(), &data).await.unwrap(), data);
    assert_eq!(proxy.stats().accepted, 1);
}

#[tokio::test]
async fn latency_slicing_throttling_and_slow_close_keep_the_bytes() {
    let faults = Faults {
        latency_ms: Some((50, 120)),
        throttle: 1.0,
        bandwidth_bps: (200_000, 200_000),
        slice: 1.0,
        slow_close: 1.0,
        ..Faults::none()
    };
    let proxy = Proxy::start(echo().await, 2, faults).await.unwrap();
    let data = payload(20_000);
    let started = Instant::now();
    assert_eq!(round_trip(proxy.addr(), &data).await.unwrap(), data);
    // Both ways: at least 2 x 50 ms latency, 2 x 0.1 s at 200 kB/s, and a slow close each way.
    assert!(
        started.elapsed() >= Duration::from_millis(600),
        "{:?}",
        started.elapsed()
    );
    let stats = proxy.stats();
    assert_eq!(
        (stats.sliced, stats.throttled, stats.slow_closes),
        (1, 1, 1)
    );
}

#[tokio::test]
async fn resets_reach_the_client_as_errors() {
    let proxy = Proxy::start(
        echo().await,
        3,
        Faults {
            reset: 1.0,
            ..Faults::none()
        },
    )
    .await
    .unwrap();
    // Enough data that the byte trigger (under 256 KiB both ways) fires.
    let data = payload(1_000_000);
    let outcome = round_trip(proxy.addr(), &data).await;
    assert!(
        outcome.as_ref().map_or(true, |got| got.len() < data.len()),
        "a reset connection cannot deliver everything"
    );
    assert_eq!(proxy.stats().resets, 1);
}

#[tokio::test]
async fn half_open_connections_go_silent_until_the_client_gives_up() {
    let proxy = Proxy::start(
        echo().await,
        4,
        Faults {
            half_open: 1.0,
            ..Faults::none()
        },
    )
    .await
    .unwrap();
    let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
    let chunk = payload(64 * 1024);
    let mut buf = vec![0u8; 64 * 1024];
    // Keep talking until the link dies: then neither data nor a close comes back.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(Instant::now() < deadline, "never went half-open");
        stream.write_all(&chunk).await.unwrap();
        let mut echoed = 0;
        while echoed < chunk.len() {
            match tokio::time::timeout(Duration::from_millis(500), stream.read(&mut buf)).await {
                Ok(Ok(n)) => {
                    assert!(n > 0, "a half-open link must not close");
                    echoed += n;
                }
                Ok(Err(e)) => panic!("a half-open link must not fail: {e}"),
                Err(_) => break,
            }
        }
        if echoed < chunk.len() {
            break;
        }
    }
    assert_eq!(proxy.stats().half_opens, 1);
    // The client gives up; the proxy lets go of the target after its hold time.
    drop(stream);
    let deadline = Instant::now() + Duration::from_secs(10);
    while proxy.stats().open > 0 {
        assert!(
            Instant::now() < deadline,
            "the half-open link was never released"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn cut_all_closes_open_connections_only() {
    let proxy = Proxy::start(echo().await, 6, Faults::none()).await.unwrap();
    let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
    stream.write_all(b"hi").await.unwrap();
    let mut buf = [0u8; 2];
    stream.read_exact(&mut buf).await.unwrap();
    proxy.cut_all();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
    assert_eq!(proxy.stats().cuts, 1);
    let data = payload(1000);
    assert_eq!(
        round_trip(proxy.addr(), &data).await.unwrap(),
        data,
        "new ones work"
    );
}

#[tokio::test]
async fn half_open_all_silences_open_connections_only() {
    let proxy = Proxy::start(echo().await, 7, Faults::none()).await.unwrap();
    let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
    stream.write_all(b"hi").await.unwrap();
    let mut buf = [0u8; 2];
    stream.read_exact(&mut buf).await.unwrap();
    proxy.half_open_all();
    // Give the proxy a moment to strike before talking again.
    tokio::time::sleep(Duration::from_millis(50)).await;
    stream.write_all(b"again").await.unwrap();
    let read = tokio::time::timeout(Duration::from_millis(500), stream.read(&mut buf)).await;
    assert!(
        read.is_err(),
        "nothing, not even a close, comes back: {read:?}"
    );
    assert_eq!(proxy.stats().half_opens, 1);
    let data = payload(1000);
    assert_eq!(
        round_trip(proxy.addr(), &data).await.unwrap(),
        data,
        "new ones work"
    );
}

#[tokio::test]
async fn dropping_the_proxy_closes_its_connections() {
    let proxy = Proxy::start(echo().await, 5, Faults::none()).await.unwrap();
    let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
    stream.write_all(b"hi").await.unwrap();
    let mut buf = [0u8; 2];
    stream.read_exact(&mut buf).await.unwrap();
    drop(proxy);
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
}
