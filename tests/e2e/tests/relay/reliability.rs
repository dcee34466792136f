//! The reliability scenarios in their short form (docs/reliability.md).

use std::time::Duration;

use orpheus_e2e::{ensure, Fixture, TestResult};

use orpheus_e2e::reliability::{self, Scale};

pub async fn chaos_client_leg(fx: &Fixture) -> TestResult {
    reliability::client_leg_chaos(fx.rig().await?, fx, Scale::SHORT).await?;
    Ok(())
}

pub async fn chaos_upstream_leg(fx: &Fixture) -> TestResult {
    reliability::upstream_leg_chaos(fx.rig().await?, fx, Scale::SHORT).await?;
    Ok(())
}

pub async fn eviction_mid_stream(fx: &Fixture) -> TestResult {
    reliability::eviction(fx.rig().await?, fx, Scale::SHORT).await?;
    Ok(())
}

pub async fn soak_short(fx: &Fixture) -> TestResult {
    let stage = reliability::soak(fx.rig().await?, fx, 4, Duration::from_secs(20)).await?;
    ensure!(
        stage.verdict.speaks >= 20 && stage.verdict.ends.get("done").is_some_and(|&n| n > 0),
        "the soak barely ran:\n{stage}"
    );
    ensure!(
        stage.notes.iter().all(|n| !n.contains('?')),
        "workerd's memory was not found: {:?}",
        stage.notes
    );
    Ok(())
}

pub async fn browser_through_chaos(fx: &Fixture) -> TestResult {
    reliability::browser_chaos(fx.rig().await?, 8).await?;
    Ok(())
}

pub async fn browser_opus_on_a_slow_link(fx: &Fixture) -> TestResult {
    reliability::browser_slow_link(fx.rig().await?, &crate::texts::english(1000)).await?;
    Ok(())
}

pub async fn browser_lost_handshake(fx: &Fixture) -> TestResult {
    reliability::browser_lost_handshake(fx.rig().await?).await?;
    Ok(())
}
