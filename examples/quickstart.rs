//! A burst of requests against a few policies, printing each decision and its headers.
//!
//! `cargo run --release --example quickstart`

use std::time::Duration;

use portcullis::{HeaderStyle, IpKeyer, Limiter, ManualClock, Policy, Quota};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A manual clock makes the demo's output the same on every run.
    let clock = ManualClock::new(1_700_000_000_000_000_000);
    let limiter = Limiter::builder()
        .policy(Policy::fixed_window("login", "5/15m".parse()?).block(Duration::from_secs(900)))
        .policy(Policy::gcra(
            "api",
            "100/h".parse::<Quota>()?.with_burst(3)?,
        ))
        .policy(Policy::leaky_bucket(
            "shaped",
            "2/s".parse::<Quota>()?.with_burst(3)?,
        ))
        .policy(Policy::concurrency("export", 2, Duration::from_secs(60))?)
        .capacity(10_000)
        .clock(clock.clone())
        .build()?;
    let keyer = IpKeyer::default();
    let client = keyer.key("2001:db8:1:2::17".parse()?);
    println!("client key: {client}\n");

    for name in ["login", "api", "shaped"] {
        let id = limiter.policy_id(name).ok_or("policy")?;
        println!("== {} ==", limiter.policy(id).ok_or("policy")?);
        for i in 1..=7 {
            let d = limiter.check(id, client, 1)?;
            let verdict = if d.allowed { "allowed" } else { "DENIED " };
            print!(
                "#{i} {verdict} remaining={} retry_after={:?} delay={:?}",
                d.remaining(),
                d.retry_after(),
                d.delay()
            );
            let headers = limiter.headers(HeaderStyle::Both, &[d]);
            let shown: Vec<String> = headers.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            println!("\n     {}", shown.join(" | "));
        }
        println!();
    }

    let export = limiter.policy_id("export").ok_or("policy")?;
    println!("== {} ==", limiter.policy(export).ok_or("policy")?);
    let (_, a) = limiter.acquire(export, client, 1)?;
    let (_, b) = limiter.acquire(export, client, 1)?;
    let (third, none) = limiter.acquire(export, client, 1)?;
    println!(
        "two leases taken; a third: allowed={} (lease: {})",
        third.allowed,
        none.is_some()
    );
    if let Some(lease) = a {
        limiter.release(lease)?;
    }
    let (again, c) = limiter.acquire(export, client, 1)?;
    println!("after one release: allowed={}", again.allowed);
    for lease in [b, c].into_iter().flatten() {
        limiter.release(lease)?;
    }

    println!("\nstats:");
    for s in limiter.stats() {
        println!(
            "  {:7} allowed={} denied={} delayed={} live_keys={} table={} KiB",
            s.name,
            s.allowed,
            s.denied,
            s.delayed,
            s.live_keys,
            s.memory_bytes / 1024
        );
    }
    Ok(())
}
