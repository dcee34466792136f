//! `scripts/reliability`: every reliability scenario at full length, then the soak, printing
//! the history checker's counts and the soak's figures (docs/reliability.md).
//!
//! usage: reliability [SOAK_SESSIONS] [SOAK_MINUTES]   (defaults 8 and 5)
//! `ORPHEUS_CHAOS_SEED` replays a run; otherwise the seed comes from the clock and is printed.

use std::path::Path;
use std::time::Duration;

use orpheus_e2e::reliability::{self, Scale};
use orpheus_e2e::{Fixture, TestResult};

fn arg(n: usize, default: f64) -> f64 {
    std::env::args()
        .nth(n)
        .map(|a| a.parse().unwrap_or_else(|_| panic!("not a number: {a}")))
        .unwrap_or(default)
}

async fn run(fx: &Fixture, sessions: usize, minutes: f64) -> TestResult {
    let rig = fx.rig().await?;
    reliability::client_leg_chaos(rig, fx, Scale::FULL).await?;
    reliability::upstream_leg_chaos(rig, fx, Scale::FULL).await?;
    reliability::eviction(rig, fx, Scale::FULL).await?;
    reliability::browser_chaos(rig, 24).await?;
    reliability::soak(rig, fx, sessions, Duration::from_secs_f64(minutes * 60.0)).await?;
    Ok(())
}

fn main() {
    if orpheus_chaos::seed_from_env().is_none() {
        std::env::set_var(
            "ORPHEUS_CHAOS_SEED",
            orpheus_chaos::clock_seed().to_string(),
        );
    }
    let (sessions, minutes) = (arg(1, 8.0) as usize, arg(2, 5.0));
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let fx = Fixture::start(&root, Fixture::test_upstream()).unwrap_or_else(|e| {
        eprintln!("fixture: {e}");
        std::process::exit(1);
    });
    let outcome = fx.runtime.block_on(run(&fx, sessions, minutes));
    drop(fx);
    if let Err(e) = outcome {
        eprintln!("reliability: FAILED: {e}");
        std::process::exit(1);
    }
    println!("reliability: all scenarios held");
}
