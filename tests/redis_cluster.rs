//! The Redis store on a Redis Cluster: each key decided on its slot's master, two hosts
//! sharing a key exactly, and slots that move (a reshard's `ASK` while a slot migrates, its
//! `MOVED` after) followed without losing a count. Needs a redis-server: `ci/redis.sh`.

mod common;

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::redis::{RedisCluster, RedisServer};
use portcullis::store::redis::{OnError, RedisOptions, RedisStore};
use portcullis::store::{StoreConfig, StoreError};
use portcullis::{Limiter, Policy, PolicyId, Quota};

fn open(url: &str) -> Result<(Limiter, PolicyId, Arc<RedisStore>), StoreError> {
    let mut o = RedisOptions::new(url);
    o.key_prefix = "cluster:".into();
    o.timeout = Duration::from_secs(2);
    // Every check goes to Redis, so the counts below are Redis's.
    o.deny_cache = false;
    let store = StoreConfig::redis(o)?;
    let StoreConfig::Redis(redis) = &store else {
        unreachable!()
    };
    let redis = Arc::clone(redis);
    let limiter = Limiter::builder()
        .policy(Policy::gcra("api", Quota::per_hour(500).unwrap()))
        .store(store)
        .build()
        .unwrap();
    let id = limiter.policy_id("api").unwrap();
    Ok((limiter, id, redis))
}

fn allowed(limiter: &Limiter, id: PolicyId, key: &str, n: usize) -> usize {
    (0..n)
        .filter(|_| limiter.check(id, key, 1).unwrap().allowed)
        .count()
}

fn dbsize(node: &RedisServer) -> u64 {
    redis::cmd("DBSIZE").query(&mut node.conn(None)).unwrap()
}

#[test]
fn keys_spread_over_every_master_and_two_hosts_share_one_exactly() {
    let cluster = RedisCluster::start(3);
    // Two hosts, each told a different node of the cluster.
    let (a, id, store_a) = open(&cluster.nodes[0].url()).unwrap();
    let (b, _, store_b) = open(&cluster.nodes[2].url()).unwrap();
    assert!(store_a.is_cluster() && store_b.is_cluster());

    for i in 0..300 {
        assert!(a.check(id, format!("user-{i}"), 1).unwrap().allowed);
    }
    let sizes: Vec<u64> = cluster.nodes.iter().map(dbsize).collect();
    assert_eq!(sizes.iter().sum::<u64>(), 300, "{sizes:?}");
    assert!(
        sizes.iter().all(|&n| n > 0),
        "every master holds keys: {sizes:?}"
    );

    let start = Arc::new(Barrier::new(2));
    let (a, b) = (Arc::new(a), Arc::new(b));
    let hosts: Vec<_> = [a, b]
        .into_iter()
        .map(|limiter| {
            let start = Arc::clone(&start);
            std::thread::spawn(move || {
                start.wait();
                allowed(&limiter, id, "shared-key", 1000)
            })
        })
        .collect();
    let counts: Vec<usize> = hosts.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(counts.iter().sum::<usize>(), 500, "{counts:?}");

    for s in [store_a.stats(), store_b.stats()] {
        assert_eq!(s.nodes, 3);
        assert_eq!(s.failures, 0);
        assert_eq!(s.redirects, 0, "the map read at open was right");
    }
}

#[test]
fn a_migrating_slot_is_followed_through_ask_then_moved_without_losing_a_count() {
    let cluster = RedisCluster::start(3);
    let (limiter, id, store) = open(&cluster.url()).unwrap();
    let key = "moving-key";
    assert_eq!(allowed(&limiter, id, key, 200), 200);

    // The key's slot is the slot of its client key: the store's hash tag.
    let slot = cluster.keyslot(key);
    let from = cluster.owner(slot);
    let to = (from + 1) % 3;
    cluster.begin_move(slot, from, to);
    assert_eq!(
        dbsize(&cluster.nodes[to]),
        1,
        "the key moved to the importing node"
    );

    // The slot is still `from`'s, which no longer has the key: it answers ASK.
    assert_eq!(allowed(&limiter, id, key, 100), 100);
    let asked = store.stats().redirects;
    assert!(asked >= 100, "each call was asked along: {asked}");
    assert_eq!(
        dbsize(&cluster.nodes[from]),
        0,
        "nothing was written on the old node"
    );

    cluster.finish_move(slot, to);
    // Now `from` answers MOVED once; the store learns the map and asks `to` directly.
    assert_eq!(
        allowed(&limiter, id, key, 400),
        200,
        "the count went on where it was"
    );
    let s = store.stats();
    assert!(s.redirects > asked, "a MOVED was followed");
    assert!(
        s.redirects <= asked + 2,
        "the map was learned: {} redirects",
        s.redirects
    );
    assert_eq!(s.failures, 0);

    // Reset reaches the key's new node too.
    assert!(limiter.reset(id, key).unwrap());
    assert_eq!(dbsize(&cluster.nodes[to]), 0);
    assert!(limiter.check(id, key, 1).unwrap().allowed);
}

#[test]
fn a_cluster_with_unserved_slots_is_refused_at_open() {
    let lone = RedisServer::start_with(&[
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        "nodes.conf",
    ]);
    let e = open(&lone.url()).err().expect("refused");
    let text = e.to_string();
    assert!(text.contains("slot 0"), "{text}");
    let e = open(&lone.url().replace("/0", "/3"))
        .err()
        .expect("refused");
    assert!(e.to_string().contains("database 0 only"), "{e}");
}

#[test]
fn a_dead_master_falls_back_for_its_own_slots_alone_and_comes_back() {
    let mut cluster = RedisCluster::start(3);
    let mut o = RedisOptions::new(cluster.url());
    o.key_prefix = "dead:".into();
    o.timeout = Duration::from_millis(100);
    o.on_error = OnError::Local;
    let limiter = Limiter::builder()
        .policy(Policy::gcra("api", Quota::per_hour(10).unwrap()))
        .store(StoreConfig::redis(o).unwrap())
        .build()
        .unwrap();
    let id = limiter.policy_id("api").unwrap();
    let fallbacks = || limiter.stats()[0].store_fallbacks;
    // A key on the master that dies, and one on another.
    let owner = |k: &str| cluster.owner(cluster.keyslot(k));
    let dying = 1;
    let gone = (0..)
        .map(|i| format!("gone-{i}"))
        .find(|k| owner(k) == dying)
        .unwrap();
    let kept = (0..)
        .map(|i| format!("kept-{i}"))
        .find(|k| owner(k) != dying)
        .unwrap();
    assert!(limiter.check(id, &gone, 1).unwrap().allowed);
    assert!(limiter.check(id, &kept, 1).unwrap().allowed);

    cluster.nodes[dying].kill();
    let before = fallbacks();
    for _ in 0..5 {
        let t = Instant::now();
        assert!(
            limiter.check(id, &gone, 1).unwrap().allowed,
            "the local share"
        );
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "no hang: {:?}",
            t.elapsed()
        );
    }
    assert_eq!(fallbacks(), before + 5, "the dead master's key fell back");
    for _ in 0..5 {
        assert!(limiter.check(id, &kept, 1).unwrap().allowed);
    }
    assert_eq!(fallbacks(), before + 5, "the other masters' keys did not");
    // Redis still counts the kept key: 6 of its 10 spent.
    let left = (0..10)
        .filter(|_| limiter.check(id, &kept, 1).unwrap().allowed)
        .count();
    assert_eq!(left, 4);

    // The master comes back with its slots (its nodes.conf): the key is decided by Redis again.
    cluster.nodes[dying].restart();
    cluster.wait_until_settled();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let before = fallbacks();
        let d = limiter.check(id, &gone, 1).unwrap();
        if fallbacks() == before {
            assert!(d.allowed);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "did not go back to the restarted master"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
